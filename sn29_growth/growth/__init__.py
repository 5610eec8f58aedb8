"""The growth engine: grow every dimension of a Llama/Phi3 checkpoint, function-preserving and trainable.

Modules, in reading order:

- :mod:`~sn29_growth.growth.spec`: what to grow (``GrowthStep``/``GrowthSpec``, YAML recipes);
- :mod:`~sn29_growth.growth.resolve`: a spec resolved against a config — validated shapes, index maps;
- :mod:`~sn29_growth.growth.ops`: pure tensor operators (maps, gathers with fills, noise, the fold);
- :mod:`~sn29_growth.growth.engine`: ``grow_tensor`` (one tensor), ``grow_state_dict``/``grow_model``;
- :mod:`~sn29_growth.growth.execute`: ``grow_checkpoint`` — the streaming run behind ``sn29 grow``;
- :mod:`~sn29_growth.growth.verify`: loss/logit comparison and the two-step trainability probe;
- :mod:`~sn29_growth.growth.fit`: shapes that fill a parameter/byte limit (``sn29 plan``).

Defaults: ``hidden_method: divisor`` (zero-pad + ``norm_divisor``, exact in bf16), ``init: trainable``
(exactly one zero factor on every new path, the other factors drawn at the tensor's own scale), new
blocks interleaved (one per group of layers, each a copy of its predecessor with o_proj/down_proj and
their biases zeroed). Randomness comes from generators seeded by (seed, step, tensor name).

Tied embeddings. The shared matrix is both a writer (embedding columns) and a reader (lm_head columns)
of the residual stream. With zero-padding its new columns must be zero — a non-zero embedding column
would change the stream — so the lm_head reads the new channels through a zero factor too. The path
still trains: at step 0 the new embedding columns get gradient from the first block's random reader
columns, and once they move, the final norm's new gains (1, not 0) let the tied lm_head read those
channels, so from step 1 every new slice has gradient. A zero final-norm gain would kill that path.
With ``clone`` the tiled embedding makes the tied logits n times larger: the final-norm gain is divided
by n. Vocabulary growth with tied embeddings uses one set of new mean rows for both roles.
"""
