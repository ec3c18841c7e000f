"""`yihu prompts build [--out DIR] [--voice V]` and `yihu prompts list`."""
from __future__ import annotations

import sys


def cmd_build(args) -> int:
    from gateway.cli import Fatal
    from ivr.prompts.build import BuildError, build
    try:
        files = build(args.out, voice=args.voice, progress=None if args.quiet else print)
    except BuildError as e:
        raise Fatal(f"prompts: {e}") from None
    except OSError as e:
        raise Fatal(f"prompts: cannot write to {args.out}: {e.strerror or e}") from None
    print(f"{len(files)} prompts written to {args.out}", file=sys.stderr)
    return 0


def cmd_list(args) -> int:
    from ivr.prompts import shipped_files
    for rel, (_name, text) in sorted(shipped_files().items()):
        print(f"{rel}\t{text}")
    return 0


def add_prompt_commands(sub) -> None:
    from ivr.prompts import SHIPPED_DIR
    from ivr.prompts.build import MANDARIN_VOICE
    p = sub.add_parser("prompts", help="the Mandarin voice prompts Asterisk plays")
    psub = p.add_subparsers(dest="prompts_command", required=True, metavar="ACTION")
    b = psub.add_parser("build", help="render every prompt with espeak-ng and sox (8 kHz mono WAV)")
    b.add_argument("--out", default=str(SHIPPED_DIR), metavar="DIR",
                   help="a sounds directory (default: the shipped set in the package)")
    b.add_argument("--voice", default=MANDARIN_VOICE,
                   help=f"espeak-ng voice (default {MANDARIN_VOICE}: Mandarin, read as Mandarin)")
    b.add_argument("--quiet", "-q", action="store_true")
    b.set_defaults(func=cmd_build)
    psub.add_parser("list", help="every shipped file and the text it says").set_defaults(func=cmd_list)
