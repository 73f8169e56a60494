"""eproduct: explore product visual search (training, embeddings, sharded LSH index, MAR@10).

The core package computes everything and never imports streamlit. `lsh`, `index`, `search`,
`metrics` and `embeddings` import numpy only, so search and evaluation load fast without torch.
"""

__version__ = "0.1.0"
