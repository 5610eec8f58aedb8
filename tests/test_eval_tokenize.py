"""SN29's per-sample tokenization rule, BOS handling, and the tokenization cache."""

from __future__ import annotations

import json

import pytest
from tokenizers import Tokenizer, normalizers, processors
from transformers import PreTrainedTokenizerFast

from sn29_growth.corpus import Sample
from sn29_growth.eval.tokenize import (
    BOS,
    DECODE,
    TOO_LONG,
    TokenizationCache,
    Tokenized,
    TokenizeSettings,
    cap_text,
    tokenize_sample,
    tokenize_samples,
    tokenizer_fingerprint,
)
from sn29_growth.tokenizer import EOS, _embedded_json, wrap

BOS_TOKEN = "<|bos|>"


def lowercasing_tokenizer():
    """Decodes to lower case: every text with a capital letter fails the round trip."""
    tok = Tokenizer.from_str(_embedded_json())
    tok.normalizer = normalizers.Lowercase()
    return wrap(tok)


def bos_tokenizer():
    """The embedded tokenizer plus a BOS token (id 1024) prepended to every text, as Llama 3's does."""
    tok = Tokenizer.from_str(_embedded_json())
    tok.add_special_tokens([BOS_TOKEN])
    bos_id = tok.token_to_id(BOS_TOKEN)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A", special_tokens=[(BOS_TOKEN, bos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS_TOKEN,
        eos_token=EOS,
        pad_token=EOS,
        clean_up_tokenization_spaces=False,
    )


WIDE = TokenizeSettings(cap_sample_len=100_000, max_sequence_len=100_000)


def test_cap_text():
    assert cap_text("short", 10) == ("short", False)
    assert cap_text("exactly10!", 10) == ("exactly10!", False)
    assert cap_text("aaa bbb ccc ddd", 10) == ("aaa bbb", True)  # last space before the cap
    assert cap_text("aaa bbbb ccc", 8) == ("aaa", True)  # a space at index 8 is not before the cap
    assert cap_text("abcdefghijkl", 5) == ("abcde", True)  # no space: cut at the cap
    assert cap_text(" abcdefgh", 5) == ("", True)


def test_rule_matches_its_definition_on_the_corpus(tokenizer, corpus):
    """Uncapped corpus samples: ids = tokenizer(text).input_ids + [eos], and they decode back exactly."""
    samples = corpus.held_out[:20]
    result = tokenize_samples(tokenizer, samples, WIDE)
    assert result.decode_failures == 0
    for s, t in zip(samples, result.items, strict=True):
        assert t.sample_id == s.id and not t.capped and t.failure is None
        assert list(t.ids) == tokenizer(s.text)["input_ids"] + [tokenizer.eos_token_id]
        assert tokenizer.decode(list(t.ids[:-1])) == s.text


def test_capped_sample_gets_no_eos_and_long_sample_is_inf(tokenizer):
    text = "alpha beta gamma delta epsilon"
    capped = tokenize_sample(
        tokenizer, Sample("c", text), TokenizeSettings(cap_sample_len=14, max_sequence_len=999)
    )
    assert capped.capped and tokenizer.decode(list(capped.ids)) == "alpha beta"
    assert tokenizer.eos_token_id not in capped.ids
    n = len(tokenizer(text)["input_ids"]) + 1  # with EOS
    fits = tokenize_sample(tokenizer, Sample("f", text), TokenizeSettings(100, max_sequence_len=n))
    assert fits.ids is not None and len(fits.ids) == n and fits.ids[-1] == tokenizer.eos_token_id
    over = tokenize_sample(tokenizer, Sample("o", text), TokenizeSettings(100, max_sequence_len=n - 1))
    assert over == Tokenized("o", None, False, TOO_LONG)


def test_decode_failures_reject_the_tokenizer_beyond_the_limit():
    tok = lowercasing_tokenizer()
    samples = [
        Sample(str(i), t) for i, t in enumerate(["fine text", "Capital A", "Capital B", "ok", "Capital C"])
    ]
    result = tokenize_samples(tok, samples, WIDE)
    assert [t.failure for t in result.items] == [None, DECODE, DECODE, None, DECODE]
    assert result.decode_failures == 3
    assert result.rejection(max_tokenize_fails=3) is None  # "more than" max_tokenize_fails
    assert "decode round trip on 3 samples" in result.rejection(max_tokenize_fails=2)


def test_too_long_samples_do_not_count_as_tokenizer_failures(tokenizer):
    samples = [Sample(str(i), "word " * 50) for i in range(5)]
    result = tokenize_samples(tokenizer, samples, TokenizeSettings(10_000, max_sequence_len=5))
    assert all(t.failure == TOO_LONG for t in result.items)
    assert result.decode_failures == 0 and result.rejection(0) is None


def test_bos_tokenizer_fails_the_rule_by_default_and_says_why():
    tok = bos_tokenizer()
    samples = [Sample(str(i), f"sample number {i}") for i in range(5)]
    result = tokenize_samples(tok, samples, WIDE)
    assert all(t.failure == BOS and t.ids is None for t in result.items)
    assert "adds a BOS token" in result.rejection(max_tokenize_fails=3)


def test_bos_tokenizer_with_allow_bos_keeps_the_bos_in_the_ids():
    tok = bos_tokenizer()
    text = "sample number one"
    t = tokenize_sample(tok, Sample("x", text), TokenizeSettings(1000, 1000, allow_bos=True))
    assert t.failure is None
    assert t.ids[0] == tok.bos_token_id and t.ids[-1] == tok.eos_token_id
    assert tok.decode(list(t.ids[1:-1])) == text
    assert TokenizeSettings(10, 10, allow_bos=True).fingerprint != TokenizeSettings(10, 10).fingerprint


def test_tokenizer_without_eos_is_refused(tokenizer):
    tok = wrap(Tokenizer.from_str(_embedded_json()))
    tok.eos_token = None
    with pytest.raises(ValueError, match="eos_token_id"):
        tokenize_samples(tok, [Sample("a", "text")], WIDE)


def test_fingerprints(tokenizer):
    assert tokenizer_fingerprint(tokenizer) == tokenizer_fingerprint(
        wrap(Tokenizer.from_str(_embedded_json()))
    )
    assert tokenizer_fingerprint(tokenizer) != tokenizer_fingerprint(lowercasing_tokenizer())
    assert tokenizer_fingerprint(tokenizer) != tokenizer_fingerprint(bos_tokenizer())
    assert TokenizeSettings(10, 20).fingerprint != TokenizeSettings(11, 20).fingerprint
    with pytest.raises(ValueError, match="cap_sample_len"):
        TokenizeSettings(-1, 20)


def test_zero_means_no_cap_and_no_limit(tokenizer):
    text = "word " * 300 + "end"
    free = tokenize_sample(tokenizer, Sample("z", text), TokenizeSettings(0, 0))
    assert not free.capped and free.failure is None and len(free.ids) > 300
    assert tokenize_sample(tokenizer, Sample("c", text), TokenizeSettings(10, 0)).capped
    assert tokenize_sample(tokenizer, Sample("l", text), TokenizeSettings(0, 5)).failure == "too_long"


SPACED = ["Hello , world", "It is n't here ; is it ?", "Wait . Then go !", "a ' b"]


def test_round_trips_follow_the_network_s_decode(tokenizer, tmp_path):
    """transformers 4.44 cleans up ' ,' etc. on decode unless tokenizer_config.json says not to (or the
    class defaults it off): such texts fail its round trip, so they fail ours too."""
    from sn29_growth.checkpoint import save_model
    from sn29_growth.eval.tokenize import network_decode
    from sn29_growth.eval.tokenizers import emulated_tokenizer, load_tokenizer
    from sn29_growth.tiny import build_tiny

    folder = tmp_path / "m"
    save_model(build_tiny("llama-gqa"), folder, tokenizer=tokenizer)  # writes clean_up false
    kept = load_tokenizer(folder, "llama")
    assert all(tokenize_sample(kept, Sample("s", t), WIDE).failure is None for t in SPACED)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    del config["clean_up_tokenization_spaces"]  # silent: PreTrainedTokenizerFast defaults it on in 4.44
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    cleaned = load_tokenizer(folder, "llama")
    assert cleaned.decode(cleaned("Hello , world")["input_ids"]) == "Hello, world"  # 4.44 itself
    emulated = emulated_tokenizer(folder, "llama")
    assert network_decode(emulated, emulated("Hello , world")["input_ids"]) == "Hello, world"
    assert emulated.decode(emulated("Hello , world")["input_ids"]) == "Hello , world"  # transformers 5
    for tok in (cleaned, emulated):
        assert [tokenize_sample(tok, Sample("s", t), WIDE).failure for t in SPACED] == ["decode"] * 4
        assert tokenize_sample(tok, Sample("s", "Hello, world."), WIDE).failure is None
    assert tokenizer_fingerprint(cleaned) != tokenizer_fingerprint(kept)  # never one cache entry
    assert tokenizer_fingerprint(emulated) != tokenizer_fingerprint(cleaned)  # the engine is in the key
    # declared LlamaTokenizer: 4.44 builds LlamaTokenizerFast, which prepends its BOS unless told not to,
    # and does not clean up
    (folder / "tokenizer_config.json").write_text(json.dumps(dict(config, tokenizer_class="LlamaTokenizer")))
    assert tokenize_sample(load_tokenizer(folder), Sample("s", SPACED[0]), WIDE).failure == "bos"
    no_bos = dict(config, tokenizer_class="LlamaTokenizer", add_bos_token=False)
    (folder / "tokenizer_config.json").write_text(json.dumps(no_bos))
    assert tokenize_sample(load_tokenizer(folder), Sample("s", SPACED[0]), WIDE).failure is None


@pytest.mark.parametrize(
    ("config", "model_type", "expected"),
    [
        ({"clean_up_tokenization_spaces": False}, None, False),
        ({"clean_up_tokenization_spaces": True, "tokenizer_class": "LlamaTokenizerFast"}, None, True),
        ({"tokenizer_class": "PreTrainedTokenizerFast"}, "llama", True),
        ({"tokenizer_class": "GPT2Tokenizer"}, None, True),
        ({"tokenizer_class": "LlamaTokenizer"}, None, False),  # 4.44 picks LlamaTokenizerFast
        ({"tokenizer_class": "GemmaTokenizerFast"}, None, False),
        ({}, "llama", False),  # no class named: the model type's LlamaTokenizerFast
        ({}, "phi3", False),
        (None, None, True),
    ],
)
def test_which_tokenizers_the_network_cleans_up(config, model_type, expected):
    from sn29_growth.network.tokenizer import network_cleans_up

    assert network_cleans_up(config, model_type) is expected


def test_cache_in_memory_and_on_disk(tokenizer, corpus, tmp_path):
    samples = list(corpus.held_out[:6])
    cache = TokenizationCache(tmp_path)
    first = cache.tokenize(tokenizer, samples, WIDE)
    assert (cache.hits, cache.misses) == (0, 6)
    assert cache.tokenize(tokenizer, samples[:3], WIDE).items == first.items[:3]
    assert (cache.hits, cache.misses) == (3, 6)

    reloaded = TokenizationCache(tmp_path)
    assert reloaded.tokenize(tokenizer, samples, WIDE) == first
    assert (reloaded.hits, reloaded.misses) == (6, 0)

    edited = [Sample(samples[0].id, samples[0].text + " more")]  # same id, new text: a different key
    again = reloaded.tokenize(tokenizer, edited, WIDE)
    assert reloaded.misses == 1 and again.items[0].ids != first.items[0].ids
    other = reloaded.tokenize(lowercasing_tokenizer(), samples[:1], WIDE)  # another tokenizer: own table
    assert reloaded.misses == 2 and other.tokenizer_fingerprint != first.tokenizer_fingerprint
