"""Parses every Terraform file under terraform/ with python-hcl2 and fails,
naming the file, when one does not parse. It also checks what a parser alone
cannot: that each module declares the variables it uses and that the files
it reads exist."""

import pathlib
import re
import sys

import hcl2

ROOT = pathlib.Path(__file__).resolve().parent.parent
TERRAFORM = ROOT / "terraform"


def main() -> int:
    failures = []
    files = sorted(TERRAFORM.rglob("*.tf"))
    if not files:
        print(f"no .tf files under {TERRAFORM}", file=sys.stderr)
        return 1
    modules = {}
    for path in files:
        try:
            with path.open() as handle:
                parsed = hcl2.load(handle)
        except Exception as error:  # noqa: BLE001 - any parse error fails the check
            failures.append(f"{path.relative_to(ROOT)}: does not parse: {error}")
            continue
        modules.setdefault(path.parent, []).append((path, parsed))

    for directory, parsed_files in modules.items():
        declared = set()
        for _, parsed in parsed_files:
            for block in parsed.get("variable", []):
                declared.update(key.strip('"') for key in block)
        text = "\n".join(path.read_text() for path, _ in parsed_files)
        used = set(re.findall(r"\bvar\.([A-Za-z_][A-Za-z0-9_-]*)", text))
        for name in sorted(used - declared):
            failures.append(f"{directory.relative_to(ROOT)}: var.{name} is used but not declared")
        for name in sorted(declared - used):
            failures.append(f"{directory.relative_to(ROOT)}: variable {name} is declared but never used")
        # Files read with file()/templatefile() relative to the module.
        for match in re.finditer(r'(?:file|templatefile)\("\$\{path\.module\}/([^"]+)"', text):
            target = (directory / match.group(1)).resolve()
            if not target.is_file():
                failures.append(f"{directory.relative_to(ROOT)}: reads {match.group(1)}, which does not exist")

    for failure in failures:
        print(failure, file=sys.stderr)
    if failures:
        return 1
    print(f"terraform: {len(files)} files in {len(modules)} modules parse")
    return 0


if __name__ == "__main__":
    sys.exit(main())
