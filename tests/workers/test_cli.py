"""The ``leximind`` command's admin chores, against the test database and Redis."""

from __future__ import annotations

import json

import pytest
import redis
from sqlalchemy import func, select

from db.accounts import user_for_token
from db.models import Document
from db.session import session_scope
from leximind.cli import build_parser, main
from leximind.cli_import import dataset_files
from leximind.config import Settings
from leximind.queues import QUEUE_EXTRACT


@pytest.fixture()
def env(clean_db, redis_url, monkeypatch, tmp_path):
    monkeypatch.setenv("DATABASE_URL", clean_db)
    monkeypatch.setenv("BROKER_URL", redis_url)
    monkeypatch.setenv("LEXIMIND_DATA_DIR", str(tmp_path))
    redis.Redis.from_url(redis_url).flushall()
    return clean_db


def test_create_user_prints_a_working_token(env, capsys):
    assert main(["create-user", "--email", "Grace@Example.com", "--admin"]) == 0
    out = capsys.readouterr().out
    token = next(line.split(": ", 1)[1] for line in out.splitlines() if "API token:" in line)
    assert "password:" in out
    with session_scope(env) as session:
        user = user_for_token(session, token)
        assert user is not None and user.email == "grace@example.com" and user.is_admin
    assert (
        main(["create-user", "--email", "grace@example.com"]) == 1
    )  # exists: a clear error, not a traceback


def test_import_dataset_uploads_and_wakes(env, tmp_path, capsys, redis_url):
    main(["create-user", "--email", "ops@example.com"])
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.txt").write_text(f"document {i}")
    capsys.readouterr()
    assert main(["import-dataset", str(folder), "--owner", "ops@example.com", "--per-job", "2"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["documents"] == 3 and len(summary["jobs"]) == 2
    with session_scope(env) as session:
        assert session.scalar(select(func.count()).select_from(Document)) == 3
    assert redis.Redis.from_url(redis_url).llen(QUEUE_EXTRACT) == 3


def test_dataset_rows_from_csv_and_jsonl(tmp_path):
    csv_file = tmp_path / "news.csv"
    csv_file.write_text(
        '"3","Markets rally","Stocks rose on Monday.\\nBonds fell."\n"1","Talks","Leaders met."\n'
    )
    files = list(dataset_files(csv_file, None, None))
    assert [f.filename for f in files] == ["news-1.txt", "news-2.txt"]
    assert files[0].data == b"Markets rally\nStocks rose on Monday.\nBonds fell."
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text('{"text": "one"}\n{"text": "two"}\n{"text": "three"}\n')
    assert [f.data for f in dataset_files(jsonl, None, 2)] == [b"one", b"two"]


def test_parser_knows_every_subcommand():
    parser = build_parser()
    for argv in (
        ["run"],
        ["web"],
        ["worker", "-Q", "extract,maintenance"],
        ["beat"],
        ["migrate"],
        ["create-user", "--email", "a@b.c"],
        ["import-dataset", "x", "--owner", "a@b.c"],
    ):
        assert parser.parse_args(argv).func is not None
    assert parser.parse_args(["worker", "-Q", "infer"]).queues == ["infer"]


@pytest.mark.parametrize(
    ("name", "content", "column", "words"),
    [
        ("rows.jsonl", '{"text": "fine"}\n{"body": "x"}\n', None, "line 2 has no 'text' field (its fields: body)"),
        ("rows.jsonl", '{"text": "fine"}\nnot json\n', None, "line 2 is not JSON"),
        ("rows.jsonl", '{"text": 5}\n', None, "line 1: 'text' must be a string, not int"),
        ("rows.jsonl", "[1, 2]\n", None, "line 1 has no 'text' field"),
        ("news.csv", '"1","a"\n', "x", "column number (0 is the first), not 'x'"),
        ("news.csv", '"1","a"\n"2","b"\n', "2", "row 1 has 2 column(s), so there is no column 2"),
        ("latin.csv", "caf\xe9\n".encode("cp1252"), None, "is not UTF-8 text"),
    ],
)
def test_import_dataset_names_the_bad_row_and_imports_nothing(env, tmp_path, capsys, name, content, column, words):
    main(["create-user", "--email", "ops@example.com"])
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    argv = ["import-dataset", str(path), "--owner", "ops@example.com", "--per-job", "1"]
    capsys.readouterr()
    assert main(argv + (["--text-column", column] if column else [])) == 1
    err = capsys.readouterr().err
    assert words in err and "nothing was imported" in err and "Traceback" not in err
    with session_scope(env) as session:
        assert session.scalar(select(func.count()).select_from(Document)) == 0


def test_import_dataset_refuses_a_missing_path_and_skips_empty_rows(env, tmp_path, capsys):
    main(["create-user", "--email", "ops@example.com"])
    capsys.readouterr()
    assert main(["import-dataset", str(tmp_path / "nope"), "--owner", "ops@example.com"]) == 1
    assert "does not exist" in capsys.readouterr().err
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text('{"text": "one"}\n{"text": "  "}\n{"text": "three"}\n')
    assert [f.data for f in dataset_files(jsonl, None, None)] == [b"one", b"three"]
    jsonl.write_text('{"text": ""}\n')
    assert main(["import-dataset", str(jsonl), "--owner", "ops@example.com"]) == 1
    assert "holds no non-empty documents or rows" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--limit", "--per-job"])
def test_import_dataset_counts_must_be_positive(flag, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["import-dataset", "x", "--owner", "a@b.c", flag, "0"])
    assert "must be a whole number of at least 1, not '0'" in capsys.readouterr().err


def test_a_setting_that_is_not_a_number_is_named_not_a_traceback(env, monkeypatch, capsys):
    monkeypatch.setenv("LEXIMIND_MAX_FILES", "10k")
    assert main(["create-user", "--email", "ops@example.com"]) == 2
    assert capsys.readouterr().err.strip() == "error: LEXIMIND_MAX_FILES must be a whole number such as 1000, not '10k'"
    monkeypatch.setenv("LEXIMIND_MAX_FILES", "")  # `VAR=` in a compose or .env file: the default
    monkeypatch.setenv("LEXIMIND_EXTRACT_TIMEOUT", " 90 ")
    settings = Settings()
    assert settings.max_files_per_upload == 1000 and settings.extract_timeout_s == 90.0


@pytest.mark.parametrize(("extra", "words"), [
    (["--file", "{tmp}/missing.txt"], "error: cannot read {tmp}/missing.txt: No such file or directory"),
    (["--file", "{tmp}/latin.txt"], "error: {tmp}/latin.txt is not UTF-8 text; predict reads plain text"),
    (["--text", "fine", "--text", "  "], "error: --text 2 is empty"),
    (["--text", "fine", "--file", "{tmp}/blank.txt"], "error: --file {tmp}/blank.txt is empty"),
])
def test_predict_names_an_unusable_input_before_loading_a_model(tmp_path, extra, words):
    (tmp_path / "latin.txt").write_bytes("caf\xe9".encode("cp1252"))
    (tmp_path / "blank.txt").write_text("\n")
    argv = ["predict", str(tmp_path / "no-model")] + [a.format(tmp=tmp_path) for a in extra]
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert str(exit_.value).startswith(words.format(tmp=tmp_path))


def test_predict_refuses_an_unknown_or_absent_device(tmp_path, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["predict", str(tmp_path), "--text", "hi", "--device", "tpu"])
    assert "invalid choice: 'tpu'" in capsys.readouterr().err
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    with pytest.raises(SystemExit) as exit_:
        main(["predict", str(tmp_path), "--text", "hi", "--device", "cuda"])
    assert "torch sees no CUDA GPU here" in str(exit_.value)


def test_train_and_evaluate_name_missing_data_or_folders_without_a_traceback(tmp_path, capsys):
    from model.artifacts import create_random_artifact

    out = str(tmp_path / "out")
    assert main(["train", "--data", str(tmp_path / "none.jsonl"), "--output", out, "--device", "cpu"]) == 1
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'none.jsonl'} does not exist"
    assert main(["train", "--recipe", "finetune", "--init", str(tmp_path / "nofolder"), "--output", out,
                 "--device", "cpu"]) == 1
    assert f"error: model folder '{tmp_path / 'nofolder'}' does not exist" in capsys.readouterr().err
    folder = create_random_artifact(tmp_path / "v1")
    assert main(["evaluate", str(folder), "--data", "bogus", "--device", "cpu"]) == 1
    assert "error: unknown data set 'bogus'; known corpora:" in capsys.readouterr().err


@pytest.mark.parametrize("email", ["x y@example.com", "@example.com", "grace@", "a@b@example.com", "a\tb@example.com"])
def test_create_user_refuses_what_is_not_an_email_address(env, capsys, email):
    assert main(["create-user", "--email", email]) == 1
    assert "is not an email address (one @ between a name and a domain, no spaces)" in capsys.readouterr().err


def test_reset_password_lets_a_locked_out_admin_back_in_and_signs_out_browsers(env, capsys):
    from db.accounts import authenticate, count_sessions, get_user_by_email, start_session

    main(["create-user", "--email", "ops@example.com", "--admin", "--password", "first-password"])
    with session_scope(env) as session:
        start_session(session, get_user_by_email(session, "ops@example.com").id)
    capsys.readouterr()
    assert main(["reset-password", "--email", "OPS@example.com"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("new password for ops@example.com:  ") and "1 browser session(s) signed out" in out
    password = out.split(":  ", 1)[1].split(" ", 1)[0]
    with session_scope(env) as session:
        user = authenticate(session, "ops@example.com", password)
        assert user is not None and authenticate(session, "ops@example.com", "first-password") is None
        assert count_sessions(session, user.id) == 0
    assert main(["reset-password", "--email", "nobody@example.com"]) == 1
    assert "no user 'nobody@example.com'" in capsys.readouterr().err
    assert main(["reset-password", "--email", "ops@example.com", "--password", "short"]) == 1
    assert "at least 8 characters" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["create-user", "--email", "ops@example.com"],
    ["reset-password", "--email", "ops@example.com"],
    ["import-dataset", "docs", "--owner", "ops@example.com"],
    ["train", "--register", "--set", "train.max_steps=1"],
])
def test_admin_chores_refuse_a_folder_without_an_installation(tmp_path, monkeypatch, capsys, argv):
    """Run from the wrong folder, they say so instead of starting an empty database there."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("LEXIMIND_DATA_DIR", str(tmp_path / "var"))

    def no_server(data_dir):  # what would have happened: a new, empty PostgreSQL in that folder
        (data_dir / "postgres").mkdir(parents=True)
        raise AssertionError("started an embedded PostgreSQL")

    def no_training(*args, **kwargs):
        raise AssertionError("trained before finding out it could not register")

    monkeypatch.setattr("leximind.services.start_embedded_postgres", no_server)
    monkeypatch.setattr("model.training.run.train_version", no_training)
    assert main(argv) == 1
    assert capsys.readouterr().err.startswith(f"error: no LexiMind database under {tmp_path / 'var'}; run this")
    assert not (tmp_path / "var" / "postgres").exists()


def test_dataset_rows_ignore_a_byte_order_mark(tmp_path):
    """Excel and Notepad start UTF-8 files with one; it is not part of the first row's text."""
    csv_file = tmp_path / "news.csv"
    csv_file.write_bytes('"Markets rally","Stocks rose."\n'.encode("utf-8-sig"))
    assert [f.data for f in dataset_files(csv_file, "0", None)] == [b"Markets rally"]
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_bytes('{"text": "one"}\n'.encode("utf-8-sig"))
    assert [f.data for f in dataset_files(jsonl, None, None)] == [b"one"]


@pytest.mark.parametrize(("queues", "words"), [(",", "error: no queue given"), ("infer,bogus", "unknown queue(s) ['bogus']")])
def test_worker_refuses_no_or_unknown_queues_before_starting_anything(monkeypatch, capsys, queues, words):
    def no_services(settings):
        raise AssertionError("started services for a worker that cannot run")

    monkeypatch.setattr("leximind.cli.prepare_services", no_services)
    assert main(["worker", "-Q", queues]) == 2
    assert words in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "evaluate", "predict"])
def test_model_commands_explain_themselves_in_help(command, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    text = capsys.readouterr().out
    description = text.split("\n\n")[1]
    assert description.strip() and not description.lstrip().startswith(("positional", "options"))
    if command != "train":
        assert "a model version folder, e.g." in text


def test_import_dataset_holds_files_to_the_upload_limit(env, tmp_path, monkeypatch, capsys):
    main(["create-user", "--email", "ops@example.com"])
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "small.txt").write_text("fine")
    (folder / "big.txt").write_bytes(b"x" * 3 * 1048576)
    monkeypatch.setenv("LEXIMIND_MAX_UPLOAD_BYTES", str(2 * 1048576))
    capsys.readouterr()
    assert main(["import-dataset", str(folder), "--owner", "ops@example.com"]) == 1
    assert capsys.readouterr().err.strip() == ("error: 1 file(s) over the 2 MB limit per file (LEXIMIND_MAX_UPLOAD_BYTES):"
                                               " big.txt (3.0 MB); nothing was imported")
    with session_scope(env) as session:
        assert session.scalar(select(func.count()).select_from(Document)) == 0


def test_dataset_folder_leaves_out_hidden_files_and_folders(tmp_path):
    (tmp_path / ".git" / "objects").mkdir(parents=True)
    (tmp_path / ".git" / "objects" / "ab12").write_bytes(b"blob")
    (tmp_path / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.md").write_text("# A")
    (tmp_path / "b.txt").write_text("b")
    assert [f.filename for f in dataset_files(tmp_path, None, None)] == ["b.txt", "a.md"]
