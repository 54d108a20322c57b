import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from headcoop.compat import TL_VERSION, new_model, parameters
from headcoop.config import ModelConfig
from headcoop.engine.run import predict
from headcoop.errors import HeadcoopError
from headcoop.loading.checkpoint import load_checkpoint, save_checkpoint
from headcoop.model import build_model
from headcoop.tasks import Count01

META = {"task": Count01().to_config(), "train": {"seed": 0, "epoch": 3}, "metrics": {"x": 1}}


@pytest.fixture
def saved(tmp_path, trained):
    return save_checkpoint(tmp_path / "ckpt", trained, META), trained


def test_round_trip_gives_the_same_model_and_metadata(saved, task):
    path, original = saved
    model, config = load_checkpoint(path)
    assert config["task"] == META["task"] and config["train"] == META["train"]
    counts = task.split("test")[:32]
    assert torch.equal(predict(model, task, counts), predict(original, task, counts))
    assert not model.pos_embed.W_pos.requires_grad


def plain_transformer_lens_model(kwargs, state):
    """The model that TransformerLens's own API builds from a checkpoint's config and weights."""
    if TL_VERSION[0] == 3:
        import transformer_lens as tl

        model = tl.HookedTransformer(tl.HookedTransformerConfig(**kwargs))
        missing, unexpected = model.load_state_dict(state, strict=False)
        assert not unexpected and all(k.endswith((".mask", ".IGNORE")) for k in missing)
        return model
    from transformer_lens import TransformerBridge, TransformerBridgeConfig
    from transformer_lens.utilities.tl_checkpoint_conversion import convert_tl_checkpoint

    model = TransformerBridge.boot_native(TransformerBridgeConfig(**kwargs))
    model.load_state_dict(convert_tl_checkpoint(state, model.cfg), strict=True)
    return model


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_plain_transformer_lens_reads_the_checkpoint(saved):
    path, original = saved
    config = json.loads((path / "config.json").read_text())
    assert config["task"]["vocab"] == list(Count01().vocab)
    model = plain_transformer_lens_model(config["model"], load_file(path / "model.safetensors"))
    tokens = Count01().bags(torch.tensor([[3, 5, 2]])).tokens
    assert torch.equal(model(tokens), original(tokens))


def test_a_checkpoint_written_by_another_program_loads(tmp_path):
    """Weights as TransformerLens itself saves them: 3.x's state dict holds buffers too."""
    kwargs = ModelConfig(d_model=6, n_heads=2, d_head=3, layernorm=False).hooked_kwargs(8)
    foreign = new_model(kwargs)
    foreign.pos_embed.W_pos.data.zero_()
    (tmp_path / "config.json").write_text(json.dumps({"model": kwargs, "task": META["task"]}))
    state = foreign.state_dict() if TL_VERSION[0] == 3 else parameters(foreign)
    save_file(
        {k: v.detach().contiguous() for k, v in state.items()}, tmp_path / "model.safetensors"
    )
    model, _ = load_checkpoint(tmp_path)
    assert model.cfg.d_model == 6
    assert torch.equal(model.blocks[0].attn.W_Q, foreign.blocks[0].attn.W_Q)


def test_saving_replaces_an_old_checkpoint_and_leaves_no_temporaries(tmp_path, task):
    first, second = build_model(ModelConfig(), 8, seed=0), build_model(ModelConfig(), 8, seed=1)
    save_checkpoint(tmp_path / "c", first, META)
    save_checkpoint(tmp_path / "c", second, META)
    assert [p.name for p in tmp_path.iterdir()] == ["c"]
    model, _ = load_checkpoint(tmp_path / "c")
    assert torch.equal(model.embed.W_E, second.embed.W_E)


def test_missing_and_corrupt_files_give_one_clear_error(saved, tmp_path):
    path, _ = saved
    with pytest.raises(HeadcoopError, match="does not exist"):
        load_checkpoint(tmp_path / "nowhere")
    (path / "config.json").write_text("{not json")
    with pytest.raises(HeadcoopError, match=r"config\.json is corrupt"):
        load_checkpoint(path)


def test_truncated_weights_are_reported_as_corrupt(saved):
    path, _ = saved
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    # the header is checked against the file's size before anything is hashed or read
    with pytest.raises(HeadcoopError, match=r"model\.safetensors is corrupt: not a safetensors"):
        load_checkpoint(path)
    config = json.loads((path / "config.json").read_text())
    del config["weights_sha256"]  # as a checkpoint written by another tool
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(HeadcoopError, match=r"model\.safetensors is corrupt"):
        load_checkpoint(path)


def test_a_flipped_byte_in_the_weights_is_refused(saved):
    path, _ = saved
    weights = path / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-3] ^= 0x10  # inside the last tensor's data: still a readable file
    weights.write_bytes(bytes(raw))
    with pytest.raises(HeadcoopError, match="does not match the checksum"):
        load_checkpoint(path)


def test_weights_that_do_not_fit_the_config_are_rejected(saved):
    path, _ = saved
    config = json.loads((path / "config.json").read_text())
    config["model"]["d_head"] = 4
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(HeadcoopError, match=r"does not fit config\.json"):
        load_checkpoint(path)


def test_vocabulary_mismatch_is_reported(saved):
    path, _ = saved
    config = json.loads((path / "config.json").read_text())
    config["task"]["vocab"] = config["task"]["vocab"][:5]
    del config["task_sha256"]  # as a checkpoint written by another tool
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(HeadcoopError, match="vocabulary mismatch"):
        load_checkpoint(path)


def test_a_task_section_changed_after_saving_is_refused(saved):
    path, _ = saved
    config = json.loads((path / "config.json").read_text())
    config["task"]["seed"] = 12345  # another test split, evaluated silently before
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(HeadcoopError, match="task section does not match its checksum"):
        load_checkpoint(path)


def test_an_unfinished_run_points_to_its_epoch_checkpoints(tmp_path):
    save_checkpoint(tmp_path / "epoch_0001", build_model(ModelConfig(), 8, seed=0), META)
    with pytest.raises(HeadcoopError, match="unfinished run: pass one of its epoch_"):
        load_checkpoint(tmp_path)
    assert load_checkpoint(tmp_path / "epoch_0001")[1]["train"]["epoch"] == 3


def test_results_are_written_under_the_users_umask(tmp_path, trained_no_ln):
    import os
    import stat

    from headcoop.files import write_atomic

    old = os.umask(0o022)
    try:
        write_atomic(tmp_path / "summary.json", "{}")
        save_checkpoint(tmp_path / "ckpt", trained_no_ln, {"task": {}, "train": {}})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "summary.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "ckpt").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "ckpt" / "model.safetensors").stat().st_mode) == 0o644
