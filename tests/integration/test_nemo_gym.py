"""NeMo Gym, unchanged, collecting rollouts through the stack (docs/rl-token-data.md, "NeMo Gym").

NeMo Gym's own `vllm_model` model server, from the nemo-gym package in .venv-ng (scripts/nemo-gym-venv),
started as `ng_run` starts it (nemo_gym_server.py) with the package's shipped configs and pointed at the
gateway (`policy_base_url: <gateway>/v1`). A rollout's model call is what NeMo Gym's rollout collection
sends: `POST /v1/responses` on the model server. The training config (`vllm_model_for_training.yaml`,
`return_token_id_information: true`) makes the model server ask the gateway for a chat completion with
per-token logprobs as `token_id:<n>`, then `POST <gateway>/tokenize` for the prompt's ids.

NeMo Gym's transport log (NEMO_GYM_VLLM_TRANSPORT_LOG) records the exact chat body it sent and the raw
reply; the test replays that body to the engine with vLLM's `return_token_ids` and checks NeMo Gym's
prompt ids, generation ids and logprobs equal what the engine itself produced.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import ROOT, Stack, free_port
from .test_token_ids import TokenAdapter
from .test_token_ids import adapter as token_adapter  # noqa: F401  (the fixture: an adapter with token data on)

pytestmark = pytest.mark.integration

SERVER = Path(__file__).with_name("nemo_gym_server.py")
TRAINING = "shipped:vllm_model_for_training.yaml"  # NeMo Gym's own file, as the package ships it
PLAIN = "shipped:vllm_model.yaml"
STACK_CONFIG = ROOT / "configs" / "nemo_gym_vllm_model_for_training.yaml"
QUESTION = "What is the capital of France? Answer in one sentence."


@pytest.fixture(scope="module")
def nemo_gym_python() -> Path:
    """NeMo Gym's venv, made on first use (a few minutes cold, a no-op after)."""
    start = time.monotonic()
    try:
        made = subprocess.run(
            [str(ROOT / "scripts" / "nemo-gym-venv")], cwd=ROOT, capture_output=True, text=True, timeout=1500
        )
    except subprocess.TimeoutExpired:
        pytest.skip("NeMo Gym could not be installed: scripts/nemo-gym-venv ran past 25 min")
    if made.returncode != 0:
        pytest.skip(
            f"NeMo Gym could not be installed (scripts/nemo-gym-venv exit {made.returncode}): {made.stderr[-800:]}"
        )
    print(f"[figures] NeMo Gym venv ready in {time.monotonic() - start:.1f} s {made.stdout.strip()}")
    return ROOT / ".venv-ng" / "bin" / "python"


@pytest.fixture(scope="module")
def model(stack: Stack) -> str:
    """The served model, once the gateway answers for it (the engine may still be warming up on a busy host)."""
    deadline, last = time.monotonic() + 300, ""
    while time.monotonic() < deadline:
        try:
            resp = httpx.get(f"{stack.url}/v1/models", timeout=10)
            if resp.status_code == 200:
                return resp.json()["data"][0]["id"]
            last = resp.text
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(2)
    raise AssertionError(f"the stack's /v1/models did not answer within 300 s: {last}")


class ModelServer:
    def __init__(self, url: str, transport_log: Path) -> None:
        self.url, self.transport_log = url, transport_log

    def responses(self, **body: Any) -> dict[str, Any]:
        resp = httpx.post(f"{self.url}/v1/responses", json=body, timeout=300)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def exchanges(self) -> list[dict[str, Any]]:
        """NeMo Gym's transport log: its exact request to the gateway and the raw reply, per model call."""
        events = [json.loads(line) for line in self.transport_log.read_text().splitlines()]
        assert not [e for e in events if e["event"] != "transport_request" and e["event"] != "transport_response"]
        requests = [e["request_payload"] for e in events if e["event"] == "transport_request"]
        replies = [e["raw_response"] for e in events if e["event"] == "transport_response"]
        assert len(requests) == len(replies)
        return [{"request": q, "reply": r} for q, r in zip(requests, replies, strict=True)]


@contextmanager
def model_server(
    python: Path, config: str, base_url: str, model: str, tmp: Path, api_key: str = "not-needed"
) -> Iterator[ModelServer]:
    port = free_port()
    log = tmp / f"nemo-gym-{port}.log"
    transport = tmp / f"transport-{port}.jsonl"
    env = os.environ | {"NEMO_GYM_VLLM_TRANSPORT_LOG": str(transport)}
    with log.open("w") as out:
        cmd = [str(python), str(SERVER), config, base_url, model, str(port), api_key]
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"NeMo Gym's model server did not start: {log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield ModelServer(url, transport)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        print(f"[nemo-gym log {config}]\n{log.read_text()[-1500:]}")


def output_message(response: dict[str, Any]) -> dict[str, Any]:
    messages = [item for item in response["output"] if item["type"] == "message"]
    assert len(messages) == 1, response["output"]
    return messages[0]


def engine_replay(stack: Stack, request: dict[str, Any]) -> dict[str, Any]:
    """NeMo Gym's chat body once more, with vLLM's return_token_ids: the engine's own generation-time
    prompt ids, generated ids and logprobs (greedy decoding: the same generation)."""
    with stack.http() as http:
        resp = http.post("/v1/chat/completions", json={**request, "return_token_ids": True})
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_shipped_training_config_collects_rollouts_with_the_engines_token_ids(
    stack: Stack, model: str, nemo_gym_python: Path, tmp_path: Path
) -> None:
    with model_server(nemo_gym_python, TRAINING, f"{stack.url}/v1", model, tmp_path) as gym:
        out = gym.responses(model=model, input=[{"role": "user", "content": QUESTION}], max_output_tokens=24,
                            temperature=0)  # fmt: skip
        (call,) = gym.exchanges()
    item = output_message(out)
    prompt, generated, logprobs = item["prompt_token_ids"], item["generation_token_ids"], item["generation_log_probs"]
    # NeMo Gym asked for logprobs as token ids (the training config), not for vLLM's return_token_ids:
    # its prompt ids came from the gateway's /tokenize.
    request, reply = call["request"], call["reply"]
    assert request["logprobs"] is True and request["return_tokens_as_token_ids"] is True
    assert "return_token_ids" not in request and reply.get("prompt_token_ids") is None
    raw = reply["choices"][0]["logprobs"]["content"]
    assert generated == [int(lp["token"].removeprefix("token_id:")) for lp in raw]
    assert logprobs == [lp["logprob"] for lp in raw]  # as the engine sent them, unchanged

    own = engine_replay(stack, request)
    assert prompt == own["prompt_token_ids"]  # the prompt the engine generated from, id for id
    assert generated == own["choices"][0]["token_ids"]
    assert logprobs == pytest.approx([lp["logprob"] for lp in own["choices"][0]["logprobs"]["content"]], abs=1e-3)
    assert item["content"][0]["text"] == own["choices"][0]["message"]["content"]
    assert len(prompt) == own["usage"]["prompt_tokens"] and len(generated) == own["usage"]["completion_tokens"]
    # The same ids at every path the gateway serves /tokenize on (root, /v1, /<backend>).
    tokenize = {k: request[k] for k in ("model", "messages", "tools", "chat_template_kwargs") if k in request}
    with stack.http() as http:
        for path in ("/tokenize", "/v1/tokenize", "/vllm/tokenize", "/vllm/v1/tokenize"):
            resp = http.post(path, json=tokenize)
            assert resp.status_code == 200 and resp.json()["tokens"] == prompt, (path, resp.text)
        text = http.post("/detokenize", json={"model": model, "tokens": generated})
        # The generation ends with the turn-end token the engine stopped on (<|im_end|>), which the text drops.
        assert text.status_code == 200 and text.json()["prompt"].startswith(item["content"][0]["text"]), text.text
    print(
        f"[figures] NeMo Gym training config via the gateway: prompt {len(prompt)} ids, generation {len(generated)}"
        f" ids + {len(logprobs)} logprobs, all equal to the engine's own; text {item['content'][0]['text']!r}"
    )


def test_shipped_training_config_with_the_adapters_token_data_on(
    token_adapter: TokenAdapter,  # noqa: F811
    nemo_gym_python: Path,
    tmp_path: Path,
) -> None:
    """The stack rendered from configs/nemo_gym_vllm_model_for_training.yaml runs its adapter with
    MODELYARD_RETURN_TOKEN_IDS=true: chat replies then carry vLLM's prompt_token_ids and token_ids, which NeMo
    Gym takes (checking them against the logprobs) without a /tokenize call."""
    url = f"{token_adapter.url}/v1"
    with model_server(nemo_gym_python, TRAINING, url, token_adapter.model, tmp_path) as gym:
        out = gym.responses(model=token_adapter.model, input=[{"role": "user", "content": QUESTION}],
                            max_output_tokens=24, temperature=0)  # fmt: skip
        (call,) = gym.exchanges()
    item = output_message(out)
    choice = call["reply"]["choices"][0]
    assert item["prompt_token_ids"] == call["reply"]["prompt_token_ids"]
    assert item["generation_token_ids"] == choice["token_ids"]
    assert item["generation_log_probs"] == [lp["logprob"] for lp in choice["logprobs"]["content"]]
    # The engine's own /tokenize, asked directly: the same prompt.
    assert item["prompt_token_ids"] == token_adapter.tokenize([{"role": "user", "content": QUESTION}])
    print(
        f"[figures] NeMo Gym training config, adapter token data on: prompt {len(item['prompt_token_ids'])} ids,"
        f" generation {len(item['generation_token_ids'])} ids, equal to the engine's"
    )


def test_plain_config_collects_rollouts(stack: Stack, model: str, nemo_gym_python: Path, tmp_path: Path) -> None:
    with model_server(nemo_gym_python, PLAIN, f"{stack.url}/v1", model, tmp_path) as gym:
        out = gym.responses(model=model, input=[{"role": "user", "content": QUESTION}], max_output_tokens=24,
                            temperature=0)  # fmt: skip
        (call,) = gym.exchanges()
    item = output_message(out)
    assert "prompt_token_ids" not in item and "logprobs" not in call["request"]
    own = engine_replay(stack, call["request"])
    assert item["content"][0]["text"] == own["choices"][0]["message"]["content"]
    assert out["usage"]["input_tokens"] == len(own["prompt_token_ids"])
    print(f"[figures] NeMo Gym plain config via the gateway: {out['usage']['output_tokens']} output tokens")


def test_the_stack_training_config_in_configs_resolves_to_the_gateway(nemo_gym_python: Path) -> None:
    """configs/nemo_gym_vllm_model_for_training.yaml, resolved by NeMo Gym's own parser."""
    code = (
        "import sys, json; from omegaconf import OmegaConf; "
        "from nemo_gym.global_config import GlobalConfigDictParser as P, GlobalConfigDictParserConfig as C; "
        "g = P().parse(C(initial_global_config_dict=OmegaConf.create({'config_paths': [sys.argv[1]]}), "
        "skip_load_from_cli=True, skip_load_from_dotenv=True)); "
        "print(json.dumps(OmegaConf.to_container(g['policy_model'], resolve=True)))"
    )
    out = subprocess.run(
        [str(nemo_gym_python), "-c", code, str(STACK_CONFIG)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    server = json.loads(out.stdout.splitlines()[-1])["responses_api_models"]["vllm_model"]
    assert server["base_url"] == "http://127.0.0.1:8080/v1"
    assert server["return_token_id_information"] is True
