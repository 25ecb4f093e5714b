"""README.md and docs/*.md say what the code does, and their quick commands run.

The manual is checked against the tree, not against itself:

- every flag passed to a tf_resnet binary (`python -m tf_resnet.X`, the
  console scripts of setup.py, `bazel run //tf_resnet:X --`, and the flags of
  a flagfile it is given) is one of that binary's absl flags, read from the
  binary's module in a subprocess;
- every repository path (`tf_resnet/...`, `flags/...`, `serving/...`) and
  Bazel target (`//tf_resnet:train`) named exists;
- every internal link, and its `#anchor`, resolves;
- the README's "Quick check" block runs as written (tiny shapes).

`CheckerTest` plants a stale flag, a missing path, a missing target and
broken links and asserts that each is reported.
"""

import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from typing import Iterator, Mapping, NamedTuple, Optional

from absl.testing import absltest

# The source tree (under Bazel, resolving the runfiles symlink leads there).
_ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
# Top-level names that are not the repository's: the venv, local runs.
_NOT_REPOSITORY = frozenset({".git", ".venv", "runs"})
# Flags absl's parser takes for every binary without defining them.
_PARSER_FLAGS = frozenset({"flagfile", "undefok"})
_TIMEOUT_SECS = 900


class Problem(NamedTuple):
  page: str
  line: int
  message: str

  def __str__(self):
    return f"{self.page}:{self.line}: {self.message}"


def pages(root: str = _ROOT) -> list[str]:
  """README.md and docs/*.md (not the tools' docs/reproduction/**/results.md)."""
  return [os.path.join(root, "README.md")] + sorted(
      glob.glob(os.path.join(root, "docs", "*.md")))


def _split_fences(text: str) -> tuple[list[tuple[int, str]], str]:
  """The fenced blocks (first line number, body) and the prose, fences blanked.

  Line numbers are 1-based; the prose keeps every line (blank where a fence
  was) so that positions in it give line numbers.
  """
  blocks, prose, body, start = [], [], None, 0
  for number, line in enumerate(text.split("\n"), 1):
    if line.lstrip().startswith("```"):
      if body is None:
        body, start = [], number + 1
      else:
        blocks.append((start, "\n".join(body)))
        body = None
      prose.append("")
    elif body is not None:
      body.append(line)
      prose.append("")
    else:
      prose.append(line)
  return blocks, "\n".join(prose)


def _line_of(text: str, offset: int) -> int:
  return text.count("\n", 0, offset) + 1


def _code_spans(prose: str) -> Iterator[tuple[int, str]]:
  for match in re.finditer(r"`([^`]+)`", prose):
    yield _line_of(prose, match.start()), match.group(1).replace("\n", " ")


def _block_commands(start: int, body: str) -> Iterator[tuple[int, str]]:
  """A fenced block's commands, backslash continuations joined."""
  pending, first = "", start
  for number, line in enumerate(body.split("\n"), start):
    if not pending:
      first = number
    if line.rstrip().endswith("\\"):
      pending += line.rstrip()[:-1] + " "
      continue
    yield first, pending + line
    pending = ""
  if pending:
    yield first, pending


def commands(text: str) -> Iterator[tuple[int, str]]:
  """Every command line: fenced blocks' lines and inline code spans."""
  blocks, prose = _split_fences(text)
  for start, body in blocks:
    yield from _block_commands(start, body)
  yield from _code_spans(prose)


def _tokens(command: str) -> list[str]:
  command = re.sub(r"^\s*\$ ", "", command)  # A shell prompt.
  try:
    return shlex.split(command, comments=True)
  except ValueError:  # Unbalanced quotes in a fragment of prose.
    return command.split()


class Binaries:
  """How the manual names binaries: modules, console scripts, Bazel labels."""

  def __init__(self, root: str = _ROOT):
    self._root = root
    with open(os.path.join(root, "setup.py")) as f:
      self.console_scripts = dict(
          re.findall(r'"(tf-resnet-[\w-]+)=([\w.]+):\w+"', f.read()))

  def is_module(self, name: str) -> bool:
    path = os.path.join(self._root, *name.split("."))
    return os.path.isfile(path + ".py")

  def module_of_label(self, label: str) -> Optional[str]:
    """`//tf_resnet:train` -> `tf_resnet.train`, through serving/'s aliases."""
    for _ in range(5):
      package, _, name = label[2:].partition(":")
      build = os.path.join(self._root, package, "BUILD")
      if not os.path.isfile(build):
        return None
      with open(build) as f:
        aliases = dict(re.findall(
            r'alias\(\s*name\s*=\s*"([^"]+)",\s*actual\s*=\s*"([^"]+)"',
            f.read()))
      if name not in aliases:
        module = (package.replace("/", ".") + "." + name)
        return module if self.is_module(module) else None
      label = aliases[name]
    return None

  def invocations(self, command: str) -> Iterator[tuple[str, list[str]]]:
    """(module, arguments) of each tf_resnet binary the command runs."""
    tokens = _tokens(command)
    segments, current = [], []
    for token in tokens:
      if token in ("|", "||", "&&", ";", "&") or token.startswith(">"):
        segments.append(current)
        current = []
      else:
        current.append(token)
    segments.append(current)
    for words in segments:
      for i, word in enumerate(words):
        base = word.rsplit("/", 1)[-1]
        rest = words[i + 1:]
        if (re.fullmatch(r"python[\d.]*", base) and rest[:1] == ["-m"]
            and len(rest) > 1 and rest[1].startswith("tf_resnet.")):
          yield rest[1], rest[2:]
          break
        if base in self.console_scripts:
          yield self.console_scripts[base], rest
          break
        if i == 0 and re.fullmatch(r"tf_resnet\.[\w.]+", word):
          # `tf_resnet.export --scales=224` in prose.
          if rest[:1] and rest[0].startswith("--") and self.is_module(word):
            yield word, rest
          break
        if word == "bazel" and rest[:1] == ["run"] and len(rest) > 1:
          module = self.module_of_label(rest[1])
          if module is not None:
            args = rest[2:]
            yield module, args[args.index("--") + 1:] if "--" in args else []
          break


def _placeholder(name: str) -> bool:
  """`X` in `python -m tf_resnet.X`: a name that stands for any binary."""
  return bool(re.fullmatch(r"[A-Z]+", name.rsplit(".", 1)[-1]))


def _flag_names(args: list[str]) -> Iterator[str]:
  for arg in args:
    arg = arg.strip("[]")
    if arg.startswith("--") and len(arg) > 2:
      name = arg[2:].split("=", 1)[0]
      if re.fullmatch(r"[A-Za-z_][\w.-]*", name):
        yield name


def _flagfile_flags(path: str) -> list[str]:
  with open(path) as f:
    return [line.strip() for line in f if line.strip().startswith("--")]


# Run in a subprocess: imports TensorFlow once, then each binary's module in a
# fork of its own (absl flags are process-global), and prints their flags.
_COLLECT = r"""
import importlib, json, os, sys
import tensorflow
from absl import flags
out = {}
for module in sys.argv[1:]:
  read, write = os.pipe()
  pid = os.fork()
  if pid == 0:
    os.close(read)
    try:
      importlib.import_module(module)
      from absl import app
      app.define_help_flags()
      names = sorted(flags.FLAGS)
      data = {"flags": names,
              "booleans": [n for n in names if flags.FLAGS[n].boolean]}
    except BaseException as e:
      data = {"error": f"{type(e).__name__}: {e}"}
    with os.fdopen(write, "w") as f:
      json.dump(data, f)
    os._exit(0)
  os.close(write)
  with os.fdopen(read) as f:
    out[module] = json.load(f)
  os.waitpid(pid, 0)
print(json.dumps(out))
"""


def collect_flags(modules: list[str]) -> dict[str, dict]:
  """{module: {"flags": [...], "booleans": [...]} or {"error": ...}}."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  result = subprocess.run(
      [sys.executable, "-c", _COLLECT, *sorted(modules)], capture_output=True,
      text=True, timeout=_TIMEOUT_SECS, env=env, cwd=_ROOT, check=False)
  if result.returncode:
    raise RuntimeError(f"collecting flags failed:\n{result.stderr}")
  return json.loads(result.stdout.strip().splitlines()[-1])


class Checker:
  """Finds what a page says that the tree does not have."""

  def __init__(self, root: str = _ROOT):
    self.root = root
    self.binaries = Binaries(root)
    self.top_level = {
        name for name in os.listdir(root)
        if name not in _NOT_REPOSITORY and not name.startswith("bazel-")
        and (not name.startswith(".") or name == ".ci")}

  def _rel(self, page: str) -> str:
    return os.path.relpath(page, self.root)

  def invoked_modules(self, page_texts: Mapping[str, str]) -> set[str]:
    return {module for text in page_texts.values()
            for _, command in commands(text)
            for module, _ in self.binaries.invocations(command)}

  def flag_problems(self, page: str, text: str,
                    known: Mapping[str, dict]) -> list[Problem]:
    problems = []
    for line, command in commands(text):
      for module, args in self.binaries.invocations(command):
        if _placeholder(module):
          continue
        if not self.binaries.is_module(module):
          problems.append(Problem(self._rel(page), line,
                                  f"no binary {module}"))
          continue
        entry = known[module]
        if "error" in entry:
          problems.append(Problem(self._rel(page), line,
                                  f"{module} does not import: {entry['error']}"))
          continue
        names, booleans = set(entry["flags"]), set(entry["booleans"])
        flags = list(_flag_names(args))
        for arg in args:  # A flagfile's flags go to the same binary.
          if arg.startswith("--flagfile="):
            path = os.path.join(self.root, arg.split("=", 1)[1])
            if os.path.isfile(path):
              flags += [f"{n} (in {arg[11:]})"
                        for n in _flag_names(_flagfile_flags(path))]
        for flag in flags:
          name = flag.split(" ", 1)[0]
          if (name in names or name in _PARSER_FLAGS
              or (name.startswith("no") and name[2:] in booleans)):
            continue
          problems.append(Problem(self._rel(page), line,
                                  f"--{flag} is not a flag of {module}"))
    return problems

  def _path_candidates(self, text: str) -> Iterator[tuple[int, str]]:
    for line, command in commands(text):
      for token in command.split():
        yield line, token
        if "=" in token:  # --flagfile=flags/..., DEST=docs/...
          yield line, token.split("=", 1)[1]

  def path_problems(self, page: str, text: str) -> list[Problem]:
    problems, seen = [], set()
    for line, token in self._path_candidates(text):
      path = token.lstrip("`'\"([").rstrip("`'\")],;:.")
      path = re.sub(r"^\./", "", path)
      if not re.fullmatch(r"[\w.-]+(/[\w.*<>-]*)+", path):
        continue
      first = path.split("/", 1)[0]
      if (first not in self.top_level or path in seen
          or not os.path.isdir(os.path.join(self.root, first))):
        continue
      seen.add(path)
      pattern = re.sub(r"<[^>]+>", "*", path)
      # From the repository's root, or (a link's text) from the page's folder.
      if not any(glob.glob(os.path.join(base, pattern))
                 for base in (self.root, os.path.dirname(page))):
        problems.append(Problem(self._rel(page), line,
                                f"no such path in the repository: {path}"))
    for match in re.finditer(r"(?<![\w:/])//([\w/.-]+)(?::([\w.-]+))?", text):
      package, name = match.group(1).rstrip("/"), match.group(2)
      if package.endswith("...") or _placeholder(name or ""):
        continue
      label = match.group(0)
      name = name or package.rsplit("/", 1)[-1]
      build = os.path.join(self.root, package, "BUILD")
      found = os.path.isfile(build) and re.search(
          r'name\s*=\s*"%s"' % re.escape(name), open(build).read())
      if not found:
        problems.append(Problem(self._rel(page), _line_of(text, match.start()),
                                f"no such Bazel target: {label}"))
    return problems

  def link_problems(self, page: str, text: str) -> list[Problem]:
    problems = []
    _, prose = _split_fences(text)
    for match in re.finditer(r"!?\[[^\]]*\]\(([^)\s]+)\)", prose):
      target = match.group(1)
      if re.match(r"[a-z][a-z+.-]*:", target):  # http:, https:, mailto:
        continue
      line = _line_of(prose, match.start())
      file_part, _, anchor = target.partition("#")
      path = os.path.normpath(os.path.join(os.path.dirname(page), file_part))
      if file_part and not os.path.exists(path):
        problems.append(Problem(self._rel(page), line,
                                f"broken link: {target}"))
      elif anchor and (not file_part or path.endswith(".md")):
        headings = anchors(text if not file_part else _read(path))
        if anchor not in headings:
          problems.append(Problem(self._rel(page), line,
                                  f"no heading for the anchor: {target}"))
    return problems


def anchors(text: str) -> set[str]:
  """The #anchors GitHub gives a page's headings."""
  _, prose = _split_fences(text)
  seen, result = {}, set()
  for heading in re.findall(r"^#{1,6} +(.+?) *#*$", prose, re.M):
    slug = re.sub(r"[^\w\- ]", "", heading.replace("`", "").lower())
    slug = slug.replace(" ", "-")
    count = seen.get(slug, 0)
    seen[slug] = count + 1
    result.add(slug if not count else f"{slug}-{count}")
  return result


def quick_check_block(readme: str) -> str:
  """The fenced block under the README's "## Quick check" heading."""
  section = readme.split("\n## Quick check\n", 1)[1].split("\n## ", 1)[0]
  match = re.search(r"```sh\n(.*?)\n```", section, re.S)
  return match.group(1)


def run_block(block: str,
              workdir: str) -> tuple[list[tuple[str, int, str]], str]:
  """Runs a block's lines as written, in one shell.

  Returns (line, exit status, standard output) for each line, and the whole
  standard error. The shell's variables carry over from line to line; `python` and the
  venv's tools (`saved_model_cli`) are the test interpreter's; temporary
  files (`mktemp`) go under `workdir`.
  """
  lines = [line for line in block.split("\n") if line.strip()]
  script = "".join(f'{line}\necho "@@status $?"\n' for line in lines)
  env = dict(os.environ, TMPDIR=workdir,
             PATH=os.path.dirname(sys.executable) + os.pathsep
             + os.environ.get("PATH", ""))
  result = subprocess.run(["bash", "-c", script], cwd=workdir, env=env,
                          capture_output=True, text=True,
                          timeout=_TIMEOUT_SECS, check=False)
  outputs = re.split(r"^@@status (\d+)\n", result.stdout, flags=re.M)
  statuses = [int(s) for s in outputs[1::2]]
  if len(statuses) != len(lines):
    raise RuntimeError(f"the block stopped early:\n{result.stderr[-3000:]}")
  return list(zip(lines, statuses, outputs[0::2])), result.stderr


def _read(path: str) -> str:
  with open(path) as f:
    return f.read()


class CheckerTest(absltest.TestCase):
  """The checker reports what is wrong and nothing that is right."""

  def setUp(self):
    super().setUp()
    # Not create_tempdir(): it needs absl's flags parsed, which pytest skips.
    self.root = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, self.root, ignore_errors=True)
    for path, content in {
        "setup.py": '"tf-resnet-train=tf_resnet.train:run",',
        "tf_resnet/train.py": "",
        "tf_resnet/BUILD": 'py_binary(\n    name = "train",\n)',
        "serving/BUILD": ('alias(\n    name = "server",\n'
                          '    actual = "//tf_resnet:train",\n)'),
        "flags/r20.flags": "--depth=20\n--no_such_flag_in_a_file=1\n",
        "docs/other.md": "# Other page\n\n## A section: `here`\n",
    }.items():
      full = os.path.join(self.root, path)
      os.makedirs(os.path.dirname(full), exist_ok=True)
      with open(full, "w") as f:
        f.write(content)
    self.checker = Checker(self.root)
    self.known = {"tf_resnet.train": {"flags": ["depth", "model_dir", "xla"],
                                      "booleans": ["xla"]}}
    self.page = os.path.join(self.root, "docs", "page.md")

  def _problems(self, text):
    return [p.message for p in
            self.checker.flag_problems(self.page, text, self.known)
            + self.checker.path_problems(self.page, text)
            + self.checker.link_problems(self.page, text)]

  def test_valid_page_has_no_problems(self):
    text = ("```sh\npython -m tf_resnet.train --depth=34 --noxla \\\n"
            "    --model_dir=/tmp/x\n"
            "bazel run //tf_resnet:train -- --depth=34\n"
            "bazel run //serving:server -- --xla\n"
            "tf-resnet-train --flagfile=flags/r20.flags --undefok=x\n```\n"
            "See `tf_resnet/train.py`, `flags/*.flags`, `//tf_resnet:train`,\n"
            "[other](other.md), [a section](other.md#a-section-here),\n"
            "[up](../setup.py) and `model_dir/best/` (a run's, not ours).\n")
    problems = self._problems(text)
    # The flagfile's own stale flag is the one problem.
    self.assertEqual(problems, [
        "--no_such_flag_in_a_file (in flags/r20.flags) is not a flag of "
        "tf_resnet.train"])

  def test_reports_a_stale_flag(self):
    for command in ("python -m tf_resnet.train --depth=34 --stale_flag=1",
                    "bazel run //tf_resnet:train -- --stale_flag",
                    "bazel run //serving:server -- --stale_flag",
                    "tf-resnet-train --stale_flag",
                    "python -m tf_resnet.train --nodepth --stale_flag"):
      with self.subTest(command):
        problems = self._problems(f"```sh\n{command}\n```\n")
        self.assertIn("--stale_flag is not a flag of tf_resnet.train",
                      problems)
    self.assertIn("--nodepth is not a flag of tf_resnet.train",
                  self._problems("`python -m tf_resnet.train --nodepth`"))
    self.assertEqual(self._problems("`python -m tf_resnet.nothing --x`"),
                     ["no binary tf_resnet.nothing"])

  def test_reports_a_missing_path_and_target(self):
    problems = self._problems(
        "Run `tf_resnet/missing.py` with `--flagfile=flags/gone.flags`;\n"
        "```sh\nbash serving/missing.sh\n```\n"
        "`bazel run //tf_resnet:missing` and `//nowhere:x`.\n")
    self.assertEqual(sorted(problems), sorted([
        "no such path in the repository: tf_resnet/missing.py",
        "no such path in the repository: flags/gone.flags",
        "no such path in the repository: serving/missing.sh",
        "no such Bazel target: //tf_resnet:missing",
        "no such Bazel target: //nowhere:x"]))

  def test_reports_a_broken_link_and_anchor(self):
    problems = self._problems(
        "[gone](gone.md), ![figure](figures/gone.png),\n"
        "[bad anchor](other.md#no-such-section), [here](#nowhere)\n"
        "# Heading of this page\n[fine](#heading-of-this-page)\n")
    self.assertEqual(problems, [
        "broken link: gone.md", "broken link: figures/gone.png",
        "no heading for the anchor: other.md#no-such-section",
        "no heading for the anchor: #nowhere"])

  def test_block_runner_reports_each_line_status(self):
    ran, _ = run_block('X=$(mktemp -d)\necho "in $X"\nfalse\n'
                    'ls $X/missing\necho done', self.root)
    self.assertEqual([status for _, status, _ in ran], [0, 0, 1, 2, 0])
    self.assertStartsWith(ran[1][2], f"in {self.root}/")
    self.assertEqual(ran[4][2], "done\n")

  def test_anchors_as_github_writes_them(self):
    self.assertEqual(
        anchors("# Serving\n## Inference: the export, `fast`\n"
                "## Under tensorflow_model_server\n## Serving\n"
                "```\n# not a heading\n```\n"),
        {"serving", "inference-the-export-fast",
         "under-tensorflow_model_server", "serving-1"})


class DocsTest(absltest.TestCase):
  """The real README and docs pages against the real tree."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.checker = Checker()
    cls.texts = {page: _read(page) for page in pages()}

  def test_readme_is_a_short_front_door_to_every_page(self):
    readme = self.texts[os.path.join(_ROOT, "README.md")]
    self.assertLess(readme.count("\n"), 250)
    for page in pages()[1:]:
      with self.subTest(page):
        self.assertTrue(f"(docs/{os.path.basename(page)}" in readme,
                        f"README.md does not link {page}")

  def test_flags_exist_in_their_binaries(self):
    modules = {m for m in self.checker.invoked_modules(self.texts)
               if self.checker.binaries.is_module(m)}
    # The manual runs the binaries users run.
    self.assertContainsSubset(
        {"tf_resnet.train", "tf_resnet.evaluate", "tf_resnet.export",
         "tf_resnet.summary", "tf_resnet.serving.server"}, modules)
    known = collect_flags(sorted(modules))
    problems = [str(p) for page, text in self.texts.items()
                for p in self.checker.flag_problems(page, text, known)]
    self.assertEqual(problems, [])

  def test_paths_and_targets_exist(self):
    problems = [str(p) for page, text in self.texts.items()
                for p in self.checker.path_problems(page, text)]
    self.assertEqual(problems, [])

  def test_links_resolve(self):
    problems = [str(p) for page, text in self.texts.items()
                for p in self.checker.link_problems(page, text)]
    self.assertEqual(problems, [])

  def test_quick_check_runs_as_written(self):
    block = quick_check_block(self.texts[os.path.join(_ROOT, "README.md")])
    workdir = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, workdir, ignore_errors=True)
    ran, stderr = run_block(block, workdir)
    lines = [line for line, _, _ in ran]
    by_command = {line: (status, output) for line, status, output in ran}
    for line, status, output in ran:
      with self.subTest(line):
        if "--helpfull" in line:  # absl prints the flags and exits 1.
          self.assertIn(status, (0, 1))
          self.assertIn("--flagfile", output)
        else:
          self.assertEqual(status, 0, stderr[-3000:])
    # What the commands are for: the trained steps evaluated, and the export
    # holding TF Serving's classify signature.
    train = next(l for l in lines if "tf_resnet.train" in l
                 and "--train_steps" in l)
    steps = int(re.search(r"--train_steps=(\d+)", train).group(1))
    evaluate = next(l for l in lines if "tf_resnet.evaluate" in l)
    report = json.loads([l for l in by_command[evaluate][1].splitlines()
                         if l.startswith("{")][-1])
    self.assertEqual(report["step"], steps)
    self.assertBetween(report["top1_error"], 0.0, 1.0)
    show = next(l for l in lines if l.startswith("saved_model_cli show"))
    self.assertIn("tensorflow/serving/classify", by_command[show][1])


if __name__ == "__main__":
  absltest.main()
