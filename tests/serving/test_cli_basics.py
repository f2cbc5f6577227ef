from __future__ import annotations

import subprocess
import sys

from retention.serving.cli import main


def test_version_prints_the_package_version(capsys) -> None:
    import retention

    assert main(["version"]) == 0
    assert retention.__version__ in capsys.readouterr().out


def test_unknown_command_exits_non_zero_without_traceback() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "retention", "no-such-command"], capture_output=True, text=True
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
