"""The README's Python examples run as written: every ```python block of its "## Python" section,
in order, in a fresh interpreter; each full-line comment `# ...` in them is the line the print
before it must write."""
import os
import re
import subprocess
import sys

from conftest import REPO


def python_section_blocks():
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    section = re.search(r"^## Python\n(.*?)(?=^## )", text, re.S | re.M)
    assert section, "README.md has no '## Python' section"
    blocks = re.findall(r"^```python\n(.*?)^```", section.group(1), re.S | re.M)
    assert blocks, "README.md's Python section has no python example"
    return blocks


def test_readme_python_examples_run_as_written(tmp_path):
    code = "".join(python_section_blocks())
    expected = [line[2:] for line in code.splitlines() if line.startswith("# ")]
    assert expected, "the examples show no output to check"
    run = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == expected
