"""The OpenAI-compatible HTTP server (`python -m src.serve`): `app` (endpoints, errors, streaming),
`schemas` (strict request bodies), `prompts` (model-dependent checks, the chat template path),
`scheduler` + `batch` (continuous batching of concurrent requests), `rerank` (best-of-N replies)."""
