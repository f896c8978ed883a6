import os

# LiteLLM reads its bundled model-cost map instead of fetching one when it is imported.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
