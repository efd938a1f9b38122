"""Time one `spec` training step (forward and backward) with each inverse STFT.

    python benchmarks/spec_train_step.py [--batch 8] [--threads 1] [--repeats 5]

Why: the inverse STFT's gradient was most of a spec training step. Training uses irfft
(``build_spec(tflite=False)``); the TFLite twin needs the two-real-FFT inverse
(``tflite=True``), whose gradient is far dearer. This prints seconds per step for both and their
ratio, on a batch of 3-s excerpts (2048 frames of 64 samples, the recipe's), random weights.
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    p = argparse.ArgumentParser(prog="python benchmarks/spec_train_step.py")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()

    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    from rtsep.models.spec import build_spec

    x = tf.constant(np.random.default_rng(0).normal(0, 0.1, (args.batch, 2048, 64)), tf.float32)
    times = {}
    for tflite in (False, True):
        model = build_spec(stems=3, context_frames=2048, tflite=tflite)

        @tf.function
        def step(model=model):  # gradients returned, so the backward pass is not pruned
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(model(x, training=True)))
            return tape.gradient(loss, model.trainable_variables)

        step()  # trace
        t0 = time.perf_counter()
        for _ in range(args.repeats):
            step()
        times[tflite] = (time.perf_counter() - t0) / args.repeats
        name = "two real FFTs (TFLite twin)" if tflite else "irfft (training)"
        print(f"inverse by {name}: {times[tflite]:.3f} s per step", flush=True)
    print(f"ratio: {times[True] / times[False]:.2f}x (batch {args.batch} x 3 s, "
          f"{args.threads} thread(s))")


if __name__ == "__main__":
    main()
