"""``auricle model sign``: in place or to ``-o OUT``, as a new version with ``--version``, atomically,
never through a link nor into the installed package."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from support.models import tone_bundle
from support.ota import keypair, members

from edge.cli.main import main as cli_main
from edge.daemon.startup import default_model_path
from edge.model.bundle import load_public_key, read_bundle


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tone_bundle(tmp_path_factory.mktemp("sign") / "tones.auricle")


@pytest.fixture
def key(tmp_path: Path) -> tuple[Path, Path]:
    return keypair(tmp_path, "release")


def _sign(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = cli_main(["model", "sign", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_a_new_version_to_a_new_file_changes_only_the_version(
    plain: Path, key: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = plain.read_bytes()
    out = tmp_path / "tones-0.1.1.auricle"
    rc, said, _ = _sign(capsys, str(plain), "--key", str(key[0]), "--version", "0.1.1", "-o", str(out))
    assert rc == 0 and said.strip() == f"wrote {out}: tones 0.1.1 (was 0.1.0), signed with {key[0]}"
    assert plain.read_bytes() == before, "the input is never touched"
    new = read_bundle(out, public_key=load_public_key(key[1]))
    assert new.manifest.version == "0.1.1"
    old_members, new_members = members(plain), members(out)
    assert new_members["model.tflite"] == old_members["model.tflite"]
    assert new_members["selftest.npz"] == old_members["selftest.npz"]
    old_manifest, new_manifest = json.loads(old_members["manifest.json"]), json.loads(new_members["manifest.json"])
    assert new_manifest == old_manifest | {"version": "0.1.1"}, "nothing else in the manifest changes"
    assert (out.stat().st_mode & 0o777) == 0o644


def test_in_place_is_atomic_and_keeps_the_file_mode(
    plain: Path, key: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "work.auricle"
    work.write_bytes(plain.read_bytes())
    work.chmod(0o640)
    rc, _, err = _sign(capsys, str(work), "--key", str(key[0]))
    assert rc == 0, err
    assert read_bundle(work, public_key=load_public_key(key[1])).manifest.version == "0.1.0"
    assert (work.stat().st_mode & 0o777) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["release.key", "release.pub", "work.auricle"], "no leftovers"
    first = work.read_bytes()
    assert _sign(capsys, str(work), "--key", str(key[0]))[0] == 0
    assert work.read_bytes() == first, "signing again gives the same bytes"


def test_a_link_to_the_shipped_model_is_not_rewritten(
    key: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """models/esc50.auricle is such a link: signing it in place would replace the link with a file
    (a dirty checkout) while the daemon kept loading the package's unsigned model."""
    shipped = Path(default_model_path())
    before = shipped.read_bytes()
    link = tmp_path / "esc50.auricle"
    link.symlink_to(shipped)
    rc, out, err = _sign(capsys, str(link), "--key", str(key[0]))
    assert rc == 2 and out == "" and err.count("\n") == 1
    assert err.startswith(f"auricle: {link}: is a link") and "-o OUT" in err
    assert link.is_symlink() and shipped.read_bytes() == before
    inside = shipped.with_name("signed.auricle")
    rc, _, err = _sign(capsys, str(link), "--key", str(key[0]), "-o", str(inside))
    assert rc == 2 and "inside the installed package" in err and not inside.exists()
    copy = tmp_path / "esc50-3.0.1.auricle"
    rc, _, err = _sign(capsys, str(link), "--key", str(key[0]), "--version", "3.0.1", "-o", str(copy))
    assert rc == 0, err
    assert read_bundle(copy, public_key=load_public_key(key[1])).manifest.version == "3.0.1"


@pytest.mark.parametrize(("version", "words"), [("3.0", "expected semver"), ("v1.0.0", "expected semver")])
def test_a_bad_version_is_one_line_and_writes_nothing(
    plain: Path, key: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], version: str, words: str
) -> None:
    out = tmp_path / "out.auricle"
    rc, _, err = _sign(capsys, str(plain), "--key", str(key[0]), "--version", version, "-o", str(out))
    assert rc == 2 and words in err and err.count("\n") == 1 and not out.exists()


def test_a_corrupt_input_is_refused_and_left_alone(
    plain: Path, key: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.auricle"
    with zipfile.ZipFile(bad, "w") as zf:
        for name, data in members(plain).items():
            zf.writestr(name, data + b"\0" if name == "model.tflite" else data)
    before = bad.read_bytes()
    rc, _, err = _sign(capsys, str(bad), "--key", str(key[0]))
    assert rc == 2 and "model.tflite sha256 mismatch" in err and bad.read_bytes() == before
