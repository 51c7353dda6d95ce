"""Status lines: one per slow step on a terminal, none otherwise (and none from the library by default)."""

import pytest

from stic import status


@pytest.fixture
def stderr(capsys):
    class Err:
        text = ""

        def getvalue(self):
            self.text += capsys.readouterr().err
            return self.text

    yield Err()
    status.enable(False)


def test_outermost_step_prints_one_line_with_its_time(stderr):
    status.enable(True)
    with status.step("loading the models"):
        with status.step("inner"):
            pass
    line = stderr.getvalue()
    assert line.startswith("stic: loading the models…") and line.endswith(" s\n") and "inner" not in line


def test_silent_when_disabled_and_a_failure_ends_the_line(stderr):
    with status.step("quiet"):
        pass
    assert stderr.getvalue() == ""
    status.enable(True)
    with pytest.raises(ValueError), status.step("failing"):
        raise ValueError
    assert stderr.getvalue() == "stic: failing…\n"
    with status.step("after"):
        pass
    assert stderr.getvalue().endswith(" s\n")  # the depth counter recovered


def test_cli_is_silent_when_stderr_is_not_a_terminal(tmp_path, capsys):
    pytest.importorskip("skimage")
    from PIL import Image
    from skimage import data

    from stic.cli import main

    Image.fromarray(data.coffee()[:64, :64]).save(tmp_path / "c.png")
    assert main(["encode", str(tmp_path / "c.png"), "--quality", "1", "--refiner", "none"]) == 0
    assert capsys.readouterr().err == ""
