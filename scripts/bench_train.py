"""Training speed: full sequences against bag compression, measured side by side in one run.

All paths train the paper's model (d_model 32, 16 heads, d_head 2, LayerNorm) on the same
fixed sample of training examples with the same batch size and optimizer, through
`headcoop.train_models`:

- full: the HookedTransformer forward on whole sequences, in the trainer's random order;
- full, sorted: the same with batches of similar length, the cheapest full-sequence baseline
  (the ratio is taken against it);
- bag: the trainer's default, 6-token bags run by `headcoop.engine.stack`, an exact re-expression
  of the HookedTransformer forward with the log-count hook.

Then it times 100 epochs of the paper's setup (7,000 examples) with the default settings.

    python scripts/bench_train.py [--examples 1000] [--skip-full-run]
"""

import argparse
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1000, help="training sample size")
    parser.add_argument("--bag-epochs", type=int, default=20, help="epochs timed on bags")
    parser.add_argument("--skip-full-run", action="store_true", help="skip the 100-epoch run")
    args = parser.parse_args()

    from headcoop.memory import keep_freed_memory

    keep_freed_memory()  # as the command line does (see headcoop.memory)

    from headcoop import (
        Count01,
        ModelConfig,
        SplitSpec,
        TrainConfig,
        build_model,
        evaluate,
        train,
        train_models,
    )
    from headcoop.engine.batches import iter_batches, read_logits
    from headcoop.engine.loss import batch_loss

    paper = Count01()
    tiny = SplitSpec(8, n01=(0, 2), n2=(0, 2))  # validation each epoch costs next to nothing
    sample = Count01(
        splits={
            **paper.splits,
            "train": SplitSpec(args.examples, (0, 100), (0, 100)),
            "val": tiny,
            "test": tiny,
        }
    )
    lengths = sample.lengths(sample.split("train")).float()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"{args.examples} training examples of mean length {lengths.mean():.0f} "
        f"(max {lengths.max():.0f}), batch size 64, d_model 32, 16 heads"
    )

    def per_example(mode: str, epochs: int) -> float:
        model = build_model(ModelConfig(), len(paper.vocab), seed=0)
        cfg = TrainConfig(epochs=epochs)
        start = time.perf_counter()
        train_models(sample, [model], cfg, mode=mode)
        return (time.perf_counter() - start) / (epochs * args.examples)

    def per_example_sorted() -> float:
        """One epoch on full sequences, batches cut from the examples sorted by length."""
        model = build_model(ModelConfig(), len(paper.vocab), seed=0)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01)
        examples = sample.split("train")
        order = sample.lengths(examples).argsort()
        start = time.perf_counter()
        for _, batch in iter_batches(sample, examples, order, 64, bags=False, n_heads=16):
            loss = batch_loss(read_logits(model, batch), batch.targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return (time.perf_counter() - start) / args.examples

    full = per_example("full", 1)
    full_sorted = per_example_sorted()
    bag = per_example("auto", args.bag_epochs)
    print(f"{'path':<28}{'ms per example':>16}")
    print(f"{'full sequences':<28}{full * 1e3:>16.4f}")
    print(f"{'full sequences, sorted':<28}{full_sorted * 1e3:>16.4f}")
    print(f"{'bag (stacked engine)':<28}{bag * 1e3:>16.4f}")
    print(f"ratio full (sorted) / bag: {full_sorted / bag:.1f}")

    if not args.skip_full_run:
        start = time.perf_counter()
        model = train(paper, ModelConfig(), TrainConfig(epochs=100))
        seconds = time.perf_counter() - start
        accuracy = evaluate(model, paper, paper.split("test"))["answer"]
        print(
            f"100 epochs of the paper's setup (7,000 examples, validation every epoch): "
            f"{seconds:.1f} s; test accuracy {accuracy:.4f}"
        )


if __name__ == "__main__":
    main()
