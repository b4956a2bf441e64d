"""Import one of OFA's published MobileNetV3 supernets into a run directory, ready to search.

    python jobs/import_supernet.py --ofa ofa_mbv3_d234_e346_k357_w1.2 --out RUN_DIR [--config FILE] [--set ...]
    python jobs/run_pipeline.py --out RUN_DIR --resume --stages search,generate,finetune \\
        --set data.dataset=folder --set data.path=/data/imagenet

Reads the file (``{"state_dict": ...}`` in OFA's key layout, or a bare state dict; tensors only,
never code), infers its width, kernel / expand / depth choices and classes from the tensors,
checks them against the file name and every ``supernet`` value given, and writes
RUN_DIR/config.yaml, RUN_DIR/supernet/supernet.pt and the train stage as done. OFA's ImageNet
resolutions (128-224, step 4) are used unless ``--set supernet.resolutions=[...]`` says otherwise.
Bad input is one line and exit status 2, with nothing written.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.runtime import job_argument_parser


def main() -> int:
    from pipeline.config import load_config
    from pipeline.ofa_bridge import import_ofa_run, stated_supernet_values
    from pipeline.run_dir import RunDir

    parser = job_argument_parser(__doc__)
    parser.add_argument("--ofa", required=True, metavar="CHECKPOINT", help="OFA MobileNetV3 supernet file")
    args = parser.parse_args()
    config = load_config(args.config, args.overrides)
    run_dir = RunDir(Path(args.out)) if args.out else RunDir.default(config)
    summary = import_ofa_run(args.ofa, config, stated_supernet_values(args.config, args.overrides), run_dir,
                             args.resume)
    sources = summary["sources"]
    print(f"imported {args.ofa}: OFA MobileNetV3 w{summary['width_mult']:g}, {summary['num_classes']} classes, "
          f"{summary['parameters'] / 1e6:.2f} M parameters, in {summary['import_seconds']:.1f} s")
    for key in ("kernel_choices", "expand_choices", "depth_choices"):
        print(f"  {key}: {summary[key]} ({sources[key]})")
    print(f"  resolutions: {summary['resolutions'][0]}..{summary['resolutions'][-1]} ({len(summary['resolutions'])})")
    print(f"supernet: {summary['supernet']} ({summary['variant']}); train stage marked as done")
    print(f"next: python jobs/run_pipeline.py --out {summary['run_dir']} --resume --stages search,generate,finetune")
    return 0

