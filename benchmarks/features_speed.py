"""Item-feature encoding speed on ML-1M: MiniLM over titles, EfficientNet-Lite0 over posters, and the cache hit.

    python benchmarks/features_speed.py [--texts 1000] [--images 256] [--sizes 160,224] [--threads N]

Measured side by side in one process: model load time, items/s of text encoding (batch 64), items/s
of image encoding (decode + resize + network, batch 32) at each image size, and for each modality
the cold (encode + write cache) against the warm (hash inputs + read cache) time of
``encode_items``. Needs modalrec[text,image] and $MODALREC_SHARED_DATA/ml-1m-posters.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from modalrec.data.features import (
    FeatureCache,
    encode_items,
    item_images,
    item_texts,
    make_encoder,
)
from modalrec.data.registry import load_dataset, shared_data_dir


def timed(run):
    start = time.perf_counter()
    out = run()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--sizes", default="160,224")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU (machine shared with other jobs)")
    ds = load_dataset("ml-1m", progress=False)
    texts = item_texts(ds, "{title}. {categories}.")[: args.texts]
    posters = [p for p in item_images(ds, shared_data_dir() / "ml-1m-posters" / "posters") if p is not None][: args.images]
    with tempfile.TemporaryDirectory() as tmp:
        cache = FeatureCache(Path(tmp))
        text_encoder = make_encoder("minilm", "text")
        _, load_s = timed(lambda: text_encoder.dim)
        print(f"\ntext: {text_encoder.name}, {text_encoder.dim}-d, load {load_s:.1f} s")
        cold, cold_s = timed(lambda: encode_items(text_encoder, texts, batch_size=64, cache=cache, progress=False))
        warm, warm_s = timed(lambda: encode_items(text_encoder, texts, batch_size=64, cache=cache, progress=False))
        assert warm.cache_hit and not cold.cache_hit
        print(f"  {len(texts)} texts, batch 64: {len(texts) / cold.seconds:.1f} items/s ({cold.seconds:.2f} s encoding)")
        print(f"  cache: cold {cold_s:.2f} s, hit {warm_s:.3f} s -> {cold_s / warm_s:.0f}x faster")
        # a fresh process pays the model load on a miss but not on a hit (the model loads lazily)
        print(f"  with the model load counted (a fresh process): {(cold_s + load_s) / warm_s:.0f}x")
        for size in (int(s) for s in args.sizes.split(",")):
            image_encoder = make_encoder("efficientnet-lite0", "image", size=size)
            _, load_s = timed(lambda: image_encoder.dim)  # noqa: B023 (called at once)
            cold, cold_s = timed(lambda: encode_items(image_encoder, posters, batch_size=32, cache=cache, progress=False))  # noqa: B023 (called at once)
            warm, warm_s = timed(lambda: encode_items(image_encoder, posters, batch_size=32, cache=cache, progress=False))  # noqa: B023 (called at once)
            assert warm.cache_hit and not cold.cache_hit
            print(f"\nimage: {image_encoder.name} at {size} px, {image_encoder.dim}-d, load {load_s:.2f} s")
            print(
                f"  {len(posters)} posters, batch 32: {len(posters) / cold.seconds:.1f} items/s "
                f"({1000 * cold.seconds / len(posters):.0f} ms per image incl. decode)"
            )
            print(f"  cache: cold {cold_s:.2f} s, hit {warm_s:.3f} s -> {cold_s / warm_s:.0f}x faster")


if __name__ == "__main__":
    main()
