"""Start NeMo Gym's own `vllm_model` model server from the installed package, the way `ng_run` does.

Run with the NeMo Gym venv's Python (tests/integration/test_nemo_gym.py):

    nemo_gym_server.py CONFIG POLICY_BASE_URL POLICY_MODEL_NAME PORT [POLICY_API_KEY]

CONFIG is a config file, or `shipped:<name>` for one of the package's own vllm_model configs
(`shipped:vllm_model_for_training.yaml`). The global config is resolved by NeMo Gym's own parser (its
config_paths + the env.yaml keys policy_base_url, policy_api_key, policy_model_name), then the server's
entrypoint `app.py` is exec'd in its package directory with NEMO_GYM_CONFIG_DICT / NEMO_GYM_CONFIG_PATH,
as `ng_run` launches it. Left out: Ray and the per-server uv venv ng_run would set up (the model server
uses neither; this venv already holds its dependencies).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import responses_api_models.vllm_model as vllm_model
from nemo_gym.global_config import (
    NEMO_GYM_CONFIG_DICT_ENV_VAR_NAME,
    NEMO_GYM_CONFIG_PATH_ENV_VAR_NAME,
    GlobalConfigDictParser,
    GlobalConfigDictParserConfig,
)
from omegaconf import OmegaConf

SERVER_DIR = Path(vllm_model.__file__).parent


def main(config: str, base_url: str, model: str, port: str, api_key: str = "not-needed") -> None:
    path = SERVER_DIR / "configs" / config.removeprefix("shipped:") if config.startswith("shipped:") else Path(config)
    initial = OmegaConf.create(
        {
            "config_paths": [str(path.resolve())],
            "policy_base_url": base_url,
            "policy_api_key": api_key,  # a gateway key where the gateway has keys
            "policy_model_name": model,
        }
    )
    parser = GlobalConfigDictParserConfig(
        initial_global_config_dict=initial, skip_load_from_cli=True, skip_load_from_dotenv=True
    )
    global_config = GlobalConfigDictParser().parse(parser)
    server = global_config["policy_model"]["responses_api_models"]["vllm_model"]
    server["host"], server["port"] = "127.0.0.1", int(port)
    resolved = OmegaConf.to_yaml(global_config)
    print(f"[nemo-gym] config {path}:\n{OmegaConf.to_yaml(server, resolve=True)}", flush=True)
    env = os.environ | {NEMO_GYM_CONFIG_DICT_ENV_VAR_NAME: resolved, NEMO_GYM_CONFIG_PATH_ENV_VAR_NAME: "policy_model"}
    os.chdir(SERVER_DIR)
    os.execve(sys.executable, [sys.executable, server["entrypoint"]], env)


if __name__ == "__main__":
    main(*sys.argv[1:6])
