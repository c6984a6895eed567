"""``retreg-gui``: start the review app, or render a screenshot of it without a screen.

    retreg-gui [FIXED MOVING] [--points FILE] [--mode M] [--matcher NAME] [--weights FILE]
    retreg-gui --screenshot OUT.png [FIXED MOVING] [--points FILE] [--mode M]

With no images the bundled sample pair opens (when present). ``--points`` opens the pair with
those point pairs (annotation .json, FIRE control points .txt or .csv) instead of registering
it; an annotation alone opens the images it names. A screenshot of an invalid points file
exits with status 2 and a one-line error.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

SCREENSHOT_SIZE = (1600, 1000)
SCREENSHOT_TIMEOUT_MS = 120_000


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from retreg.core.matchers import available_matchers
    from retreg.core.types import TRANSFORM_TYPES, Mode

    p = argparse.ArgumentParser(prog="retreg-gui", description="RetReg review and annotation app")
    p.add_argument("images", nargs="*", metavar="FIXED MOVING", help="fixed and moving image")
    p.add_argument("--mode", choices=[m.value for m in Mode],
                   help="registration mode (default: guessed from the file names)")
    p.add_argument("--matcher", choices=available_matchers(), help="matcher to register with")
    p.add_argument("--weights", type=Path, help="model weights (.safetensors) for the matcher")
    p.add_argument("--transform", choices=TRANSFORM_TYPES,
                   help="transform type to register with (default: the one last used)")
    p.add_argument("--dark", action="store_true", help="use the dark palette")
    p.add_argument("--points", type=Path, metavar="FILE",
                   help="open the pair with these point pairs (annotation .json, FIRE .txt or "
                        ".csv) instead of registering it")
    p.add_argument("--screenshot", type=Path, metavar="OUT.png",
                   help="open and register the pair, save a PNG of the window, and exit")
    args = p.parse_args(argv)
    if len(args.images) not in (0, 2):
        p.error("give both a FIXED and a MOVING image, or neither")
    if args.points and not args.images and args.points.suffix.lower() != ".json":
        p.error("--points with a .txt or .csv file needs the FIXED and MOVING images")
    return args


def pair_to_open(args: argparse.Namespace) -> tuple[Path, Path] | None:
    """The images given, else those the ``--points`` annotation names, else the sample pair
    (None without one); raises ``RetRegError`` when the annotation cannot be read."""
    if args.images:
        return Path(args.images[0]), Path(args.images[1])
    if args.points:
        from retreg.core.annotations import load_annotation
        from retreg.gui.controller import annotation_images

        return annotation_images(load_annotation(args.points), args.points)
    return sample_pair()


def sample_pair() -> tuple[Path, Path] | None:
    """The bundled sample pair, or None when the installation lacks it."""
    from retreg.resources import sample_pair as bundled

    pair = bundled()
    return pair if all(p.is_file() for p in pair) else None


def make_app(argv: list[str]):
    """The QApplication, configured for RetReg (names used by QSettings and app-data paths)."""
    import pyqtgraph as pg
    from PySide6 import QtWidgets

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(argv)
    app.setOrganizationName("RetReg")
    app.setApplicationName("RetReg")
    app.setStyle("Fusion")
    pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)
    return app


def _apply_cli_choices(window, args: argparse.Namespace) -> None:
    if args.weights:
        window.use_weights(args.weights)
    if args.matcher:
        window.select_data(window.matcher_combo, args.matcher)
    if args.transform:
        window.doc.set_initial_transform(args.transform)
        window.select_data(window.transform_combo, args.transform)
    if args.dark:
        window.act_dark.setChecked(True)
        window.set_dark(True)


def _fail(message: str) -> int:
    print(f"retreg-gui: error: {message}", file=sys.stderr)
    return 2


def take_screenshot(app, args: argparse.Namespace) -> int:
    """Open + register the pair (or load ``--points`` onto it) in a hidden-screen window and
    save a PNG of it. Nothing modal may open here: errors are printed and end the run."""
    from PySide6 import QtCore

    from retreg.core.errors import RetRegError
    from retreg.core.io import read_image
    from retreg.gui.controller import read_points_file
    from retreg.gui.main_window import MainWindow
    from retreg.gui.settings import Settings

    try:
        pair = pair_to_open(args)
        if not pair:
            return _fail("no images given and no bundled sample pair")
        images = read_image(pair[0]), read_image(pair[1])
        points = read_points_file(args.points, *pair, *images) if args.points else None
    except RetRegError as exc:
        return _fail(str(exc))
    with tempfile.TemporaryDirectory() as tmp:  # fresh settings: a reproducible picture
        window = MainWindow(Settings(Path(tmp) / "settings.ini"), recovery_dir=tmp)
        _apply_cli_choices(window, args)
        window.resize(*SCREENSHOT_SIZE)
        window.show()
        loop = QtCore.QEventLoop()
        outcome: dict[str, bool] = {}
        window.registration_done.connect(lambda ok: (outcome.update(ok=ok), loop.quit()))
        QtCore.QTimer.singleShot(SCREENSHOT_TIMEOUT_MS, loop.quit)
        mode = args.mode or (points.annotation.mode if points and points.annotation else None)
        if not window.open_pair(pair[0], pair[1], mode=mode, register=points is None,
                                images=images):
            return 1
        if points is not None:
            for mismatch in points.mismatches:
                print(f"retreg-gui: warning: {mismatch}", file=sys.stderr)
            done = window.controller.adopt_points(points)
            window.statusBar().showMessage(done)
        else:
            if "ok" not in outcome:  # a pair without a mode reports at once, unregistered
                loop.exec()
            if "ok" not in outcome:
                print("retreg-gui: registration did not finish in time", file=sys.stderr)
            verdict = window.doc.result.verdict if window.doc.result is not None else None
            done = (f"verdict {verdict.level}" if verdict is not None and outcome.get("ok")
                    else f"registration {'ok' if outcome.get('ok') else 'failed'}")
        app.processEvents()
        window.pair_view.reset_zoom()
        for _ in range(5):  # let views settle (line overlay follows range changes)
            app.processEvents()
        args.screenshot.parent.mkdir(parents=True, exist_ok=True)
        saved = window.grab().save(str(args.screenshot), "PNG")
        window.doc.mark_saved()  # a screenshot is not work to keep
        window.close()
    if not saved:
        print(f"retreg-gui: cannot write {args.screenshot}", file=sys.stderr)
        return 1
    print(f"saved {args.screenshot} ({done})")
    return 0


def main(argv: list[str] | None = None) -> int:
    # Inference and an optional training run share 2 cores: idle OpenMP threads must not spin.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.screenshot:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    app = make_app(sys.argv[:1])
    if args.screenshot:
        return take_screenshot(app, args)

    from retreg.gui.main_window import MainWindow

    window = MainWindow()
    _apply_cli_choices(window, args)
    window.show()
    recovered = window.offer_recovery()
    if args.points and not args.images:
        window.load_annotation(args.points)
    elif args.images:
        if window.open_pair(args.images[0], args.images[1], mode=args.mode,
                            register=not args.points) and args.points:
            window.import_points_from(None, args.points)
    elif not recovered and (pair := sample_pair()) is not None:
        window.open_pair(*pair, mode=args.mode)
    elif not recovered:
        window.statusBar().showMessage("Open a fixed and a moving image (Ctrl+O) or drop them "
                                       "here")
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
