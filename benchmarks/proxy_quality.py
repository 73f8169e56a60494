"""How well the proxy groundtruth of `catalog proxy-split` finds same-product photos, where products are known.

On a catalog whose val.csv carries product_id (the synthetic catalog does; the real eProduct does not), computes
the colour signatures once, then for each (title threshold, image threshold) the proxy groups and their pair
precision / recall against the true products, and the queries the proxy split would have. Prints a table:

  python -m eproduct_core catalog synth /tmp/shop --size small
  python benchmarks/proxy_quality.py /tmp/shop
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    from eproduct_core.catalog import read_catalog
    from eproduct_core.proxy_split import ProxySettings, proxy_groups, score_groups, thumbnails

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("catalog", type=Path)
    parser.add_argument("--titles", default="0.5,0.6,0.7,0.8,0.9,1.0")
    parser.add_argument("--images", default="0.0,0.3,0.5,0.7")
    args = parser.parse_args()
    catalog = read_catalog(args.catalog)
    val = catalog.val.reset_index(drop=True)
    if "product_id" not in val.columns:
        raise SystemExit(f"{args.catalog}/val.csv has no product_id column: nothing to score against")
    signatures, ok = thumbnails([catalog.image_path(p) for p in val["path"]])
    products = val["product_id"].to_numpy()
    default = ProxySettings()
    print(f"{args.catalog}: {len(val)} val photos of {len(set(products))} products\n")
    print("| title Jaccard >= | image cosine >= | queries | proxy pairs | pair precision | pair recall |")
    print("|---|---|---|---|---|---|")
    for title in (float(t) for t in args.titles.split(",")):
        for image in (float(i) for i in args.images.split(",")):
            groups = proxy_groups(val, signatures, ok, ProxySettings(title_threshold=title, image_threshold=image))
            score = score_groups(groups, products)
            sizes = np.bincount(groups[groups >= 0])
            mark = " (default)" if (title, image) == (default.title_threshold, default.image_threshold) else ""
            print(
                f"| {title}{mark} | {image} | {int((sizes >= 2).sum())} | {score['proxy_pairs']} | "
                f"{score['precision']:.3f} | {score['recall']:.3f} |"
            )
    print(f"\ncommand: python benchmarks/proxy_quality.py {' '.join(sys.argv[1:])}")


if __name__ == "__main__":
    main()
