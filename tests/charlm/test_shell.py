"""`chainrule --version` and `chainrule completion bash|zsh`, through the command line as a user runs them."""
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import chainrule

SUBCOMMANDS = ("train", "sample", "eval", "info", "diagnose", "demo", "completion")


def cli(*args):
    return subprocess.run([sys.executable, "-m", "chainrule", *args], capture_output=True, text=True, timeout=120)


def test_version_comes_from_the_installed_package_metadata():
    result = cli("--version")
    assert result.returncode == 0
    assert result.stdout == f"chainrule {metadata.version('chainrule')}\n"
    assert metadata.version("chainrule") == chainrule.__version__


def test_bash_completion_is_valid_bash_and_knows_the_subcommands_and_options(tmp_path):
    result = cli("completion", "bash")
    assert result.returncode == 0 and result.stderr == ""
    script = tmp_path / "chainrule.bash"
    script.write_text(result.stdout)
    checked = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    for command in SUBCOMMANDS:
        assert command in result.stdout
    assert "--temperature" in result.stdout and "--minutes" in result.stdout and "--version" in result.stdout
    sourced = subprocess.run(["bash", "-c", f"source {script} && complete -p chainrule"], capture_output=True,
                             text=True)
    assert sourced.returncode == 0 and "chainrule" in sourced.stdout, sourced.stderr


def test_zsh_completion_knows_the_subcommands_and_registers_itself_when_evaluated(tmp_path):
    result = cli("completion", "zsh")
    assert result.returncode == 0 and result.stdout.startswith("#compdef chainrule")
    for command in SUBCOMMANDS:
        assert f"\n    {command}:" in result.stdout
    assert "compdef _shtab_chainrule -N chainrule" in result.stdout  # what `eval "$(...)"` in ~/.zshrc runs
    if shutil.which("zsh") is None:
        pytest.skip("zsh is not installed: the script's syntax was not checked with zsh -n")
    script = tmp_path / "_chainrule"
    script.write_text(result.stdout)
    checked = subprocess.run(["zsh", "-n", str(script)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


def test_completion_for_another_shell_is_refused_with_the_choices():
    result = cli("completion", "fish")
    assert result.returncode == 2 and "choose from 'bash', 'zsh'" in result.stderr


def test_py_typed_marks_the_package_as_typed():
    assert (Path(chainrule.__file__).parent / "py.typed").is_file()
