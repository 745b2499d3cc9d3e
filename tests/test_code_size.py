"""Files and functions a maintainer can read: no source file over 400 lines and no function over 60 lines,
generated files excepted (firmware/src/generated)."""
import ast
import subprocess

from conftest import REPO_ROOT

MAX_FILE_LINES, MAX_FUNCTION_LINES = 400, 60
SOURCE_SUFFIXES = (".py", ".c", ".h", ".cpp", ".cc")


def sources() -> list:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT,
                            capture_output=True, text=True, check=True).stdout.split()
    return [REPO_ROOT / name for name in listed if name.endswith(SOURCE_SUFFIXES)
            and not name.startswith("firmware/src/generated/") and (REPO_ROOT / name).is_file()]


def c_function_lengths(text: str) -> dict[int, int]:
    """Line of each top-level brace block that follows a ')' (a function body) -> its length in lines."""
    lengths, depth, start, previous = {}, 0, None, ""
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.split("//")[0].strip()
        if depth == 0 and stripped.startswith("{") and previous.endswith(")"):
            start = number
        depth += stripped.count("{") - stripped.count("}")
        if depth == 0 and start is not None:
            lengths[start] = number - start + 1
            start = None
        previous = stripped or previous
    return lengths


def test_no_file_is_longer_than_400_lines():
    long = {str(path.relative_to(REPO_ROOT)): n for path in sources()
            if (n := len(path.read_text(errors="replace").splitlines())) > MAX_FILE_LINES}
    assert not long, long


def test_no_function_is_longer_than_60_lines():
    long = {}
    for path in sources():
        text = path.read_text(errors="replace")
        if path.suffix == ".py":
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    length = node.end_lineno - node.lineno + 1
                    if length > MAX_FUNCTION_LINES:
                        long[f"{path.relative_to(REPO_ROOT)}:{node.lineno} {node.name}"] = length
        else:
            long |= {f"{path.relative_to(REPO_ROOT)}:{line}": n for line, n in c_function_lengths(text).items()
                     if n > MAX_FUNCTION_LINES}
    assert not long, long


def test_the_brace_scanner_measures_a_c_function():
    assert c_function_lengths("int f(void)\n{\n    return 0;\n}\nstatic int x = {1};\n") == {2: 3}
