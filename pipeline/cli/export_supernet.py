"""Export a supernet trained here in another tool's format (OFA's, for OFA, DyNAS-T and NSGANetV2).

    python jobs/export_supernet.py --format ofa --run RUN_DIR --out ofa_mbv3_d234_e346_k357_w1.0
    python jobs/export_supernet.py --format ofa --checkpoint supernet.pt --out FILE

Writes ``{"state_dict": ...}`` in OFA's ``OFAMobileNetV3`` key layout, which OFA's own code loads
with ``load_state_dict``. Only a single-exit, plain-block (``SE_B``) supernet has that layout.
"""

from __future__ import annotations

import argparse

from pipeline.runtime import add_output_arguments


def main() -> int:
    from pipeline.ofa_bridge import export_ofa

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--format", required=True, choices=("ofa",), help="the file layout to write")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="a run directory (its supernet/supernet.pt)")
    source.add_argument("--checkpoint", help="a supernet checkpoint file of this project")
    parser.add_argument("--out", required=True, help="the file to write")
    add_output_arguments(parser)
    args = parser.parse_args()
    summary = export_ofa(args.run or args.checkpoint, args.out)
    print(f"exported {summary['tensors']} tensors (w{summary['width_mult']:g}, {summary['num_classes']} classes) "
          f"in OFA's layout to {summary['out']}")
    return 0

