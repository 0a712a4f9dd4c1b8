"""`feast-sequence`: help on every command, one --repo default, errors as one line (tracebacks with
--debug), and `show`, which prints one entity's sequence as the store serves it."""

from __future__ import annotations

import re

import click
import pytest

from feast_sequence.cli import group, main, show

from sample_repo import events, objects

COMMANDS = sorted(group.commands)


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help(name, capsys):
    assert main([name, "--help"]) == 0
    assert f"Usage: feast-sequence {name}" in capsys.readouterr().out


@pytest.mark.parametrize("name", COMMANDS)
def test_dash_h_is_help_on_every_command(name, capsys):
    assert main([name, "-h"]) == 0
    assert f"Usage: feast-sequence {name}" in capsys.readouterr().out
    assert main(["-h"]) == 0 and "Commands:" in capsys.readouterr().out


#: What `feast-sequence --help` must not wait for: each takes seconds to import.
HEAVY = ("feast", "pyspark", "great_expectations", "pandas", "fastapi")

IMPORTS_OF = """
import sys
from feast_sequence.cli import main
code = main(sys.argv[1:])
print(code, sorted({name.split(".")[0] for name in sys.modules} & set(HEAVY)))
""".replace("HEAVY", repr(HEAVY))


def imports_of(*args: str) -> str:
    """The exit code and the heavy packages loaded by `feast-sequence ARGS`, in a fresh interpreter."""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", IMPORTS_OF, *args], capture_output=True, text=True, check=True)
    return run.stdout.splitlines()[-1]


@pytest.mark.parametrize("args", [["--help"], *([name, "--help"] for name in COMMANDS if name != "serve")])
def test_help_loads_neither_feast_nor_spark_nor_great_expectations(args):
    # serve's help lists `feast serve`'s own options, which it takes from Feast.
    assert imports_of(*args) == "0 []"


def test_a_missing_repository_is_told_before_feast_loads(tmp_path):
    assert imports_of("health", "--repo", str(tmp_path)) == "1 []"


def test_the_group_lists_each_command_on_one_line(capsys):
    assert main(["--help"]) == 0
    listing = capsys.readouterr().out.split("Commands:\n")[1].splitlines()
    assert [line.split()[0] for line in listing if line.strip()] == COMMANDS
    assert main([]) == 2  # no command: usage, as any click group


def test_every_command_defaults_repo_to_the_current_directory(capsys):
    defaults = {
        name: next(p.default for p in command.params if p.name == "repo")
        for name, command in group.commands.items()
        if name != "serve"  # it passes its options on to feast serve's own (push_server.py)
    }
    assert set(defaults.values()) == {"."} and len(defaults) == len(COMMANDS) - 1, defaults
    assert main(["serve", "--help"]) == 0
    assert re.search(r"--repo TEXT[^-]*\[default: \.\]", capsys.readouterr().out)


def test_an_error_is_one_line_and_debug_shows_the_traceback(tmp_path, capsys):
    args = ["show", "clicks", "1", "--repo", str(tmp_path)]  # no feature_store.yaml there
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.match(r"Error: FileNotFoundError: .*feature_store\.yaml", err[0]), err
    with pytest.raises(FileNotFoundError):
        main([*args, "--debug"])


@pytest.fixture
def store(make_store, tmp_path):
    store = make_store(objects(tmp_path / "events"))
    store.push(
        "clicks_push",
        events([(7, f"i{k}", k, 1.5, k % 2 == 0, f"2024-01-01T00:0{k}:00Z") for k in range(4)]),
    )
    return store


def test_show_prints_an_entitys_sequence_newest_first(store, capsys):
    repo = str(store.repo_path)
    assert main(["show", "clicks", "7", "--repo", repo]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "clicks for user_id=7: 4 events, newest first"
    items = re.findall(r"\bi(\d)\b", out)
    assert items == ["3", "2", "1", "0"]  # as get_online_features serves them
    served = store.get_online_features(features=["clicks:item"], entity_rows=[{"user_id": 7}]).to_dict()
    assert [f"i{i}" for i in items] == served["item"][0]

    assert main(["show", "clicks", "user_id=7", "--limit", "2", "--repo", repo]) == 0
    out = capsys.readouterr().out
    assert re.findall(r"\bi(\d)\b", out) == ["3", "2"] and "... 2 more" in out


def test_show_prints_the_timestamp_then_the_fields_in_the_views_order(store, capsys):
    # Feast's response has no stable column order (it changed from run to run): show sets one, as
    # docs/offline.md prints it.
    assert main(["show", "clicks", "7", "--repo", str(store.repo_path)]) == 0
    header = capsys.readouterr().out.splitlines()[2].split()
    assert header == ["ts", "item", "n", "price", "flag"], header


def test_show_with_a_use_case_prints_its_output(store, capsys):
    assert main(["show", "clicks", "7", "--use-case", "click_service", "--repo", str(store.repo_path)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "use case 'click_service' for user_id=7:"
    assert "clicks__item" in out and "profile__scores" in out


def test_show_names_a_wrong_entity_key(store, capsys):
    repo = str(store.repo_path)
    assert main(["show", "pages", "7", "--repo", repo]) == 2  # two join keys: a bare value is ambiguous
    assert "has join keys user_id, session_id: give each as NAME=VALUE" in capsys.readouterr().err
    assert main(["show", "clicks", "user_id=seven", "--repo", repo]) == 2
    assert "user_id='seven' is not a INT64 value" in capsys.readouterr().err
    assert main(["show", "pages", "user_id=7", "session_id=s1", "--repo", repo]) == 0  # never pushed
    assert "(empty: no events for" in capsys.readouterr().out


def test_entity_rows_take_the_join_keys_types(tmp_path):
    from feast_sequence import sequence_settings

    pages = next(sequence_settings(v) for v in objects(tmp_path) if v.name == "pages")
    assert show.entity_row(pages, ["session_id=abc", "user_id=12"]) == {"session_id": "abc", "user_id": 12}
    with pytest.raises(click.BadParameter, match="missing join key"):
        show.entity_row(pages, ["user_id=12"])
    with pytest.raises(click.BadParameter, match="NAME one of user_id, session_id"):
        show.entity_row(pages, ["customer=1", "user_id=2"])


WARN_THRICE = """
import sys, warnings
from feast_sequence.output import quiet_warnings
if sys.argv[1] == "quiet":
    quiet_warnings()
for _ in range(3):
    with warnings.catch_warnings():  # as Feast's registry reads do: clears what was shown
        pass
    warnings.warn("experimental", RuntimeWarning)
warnings.warn("another", RuntimeWarning)
"""


@pytest.mark.parametrize("mode, shown", [("quiet", 2), ("default", 4)])
def test_quiet_output_prints_each_warning_once(mode, shown):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", WARN_THRICE, mode], capture_output=True, text=True, check=True)
    assert result.stderr.count("RuntimeWarning:") == shown, result.stderr


def test_spark_sessions_log_quietly_unless_the_repository_configures_it():
    from feast_sequence.offline.spark import QUIET_LOG4J, quiet_conf

    quiet = quiet_conf({"spark.driver.extraJavaOptions": "-Xss4m", "spark.master": "local[2]"})
    options = quiet["spark.driver.extraJavaOptions"]
    assert options.startswith("-Xss4m -Dlog4j2.configurationFile=file:") and QUIET_LOG4J.exists()
    assert quiet["spark.ui.showConsoleProgress"] == "false" and quiet["spark.master"] == "local[2]"
    own = {
        "spark.driver.extraJavaOptions": "-Dlog4j2.configurationFile=mine.xml",
        "spark.ui.showConsoleProgress": "true",
    }
    assert quiet_conf(own) == own


def one_error_line(capsys) -> str:
    """The command's stderr, which must be one line."""
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_an_unknown_view_or_feature_is_one_line_naming_what_exists(store, capsys):
    read = ["get-online-features", "--repo", str(store.repo_path), "-e", "user_id=7"]
    assert main([*read, "-f", "clicks:itemid"]) == 1
    line = one_error_line(capsys)
    assert "'itemid'" in line and "clicks" in line and "item, n, price, flag" in line, line
    assert main([*read, "-f", "click:item"]) == 1
    line = one_error_line(capsys)
    assert "'click'" in line and "clicks" in line and "pages" in line, line
    assert main(["show", "click", "7", "--repo", str(store.repo_path)]) == 1
    line = one_error_line(capsys)
    assert "'click'" in line and "clicks" in line, line
    with pytest.raises(Exception, match="itemid"):  # --debug: the traceback
        main([*read, "-f", "clicks:itemid", "--debug"])


def test_a_wrong_join_key_is_one_line_naming_the_keys(store, capsys):
    read = ["get-online-features", "--repo", str(store.repo_path), "-f", "clicks:item"]
    assert main([*read, "-e", "customer_id=7"]) == 1
    line = one_error_line(capsys)
    assert "'customer_id'" in line and "user_id" in line, line
    assert main([*read, "-e", "user_id=seven"]) == 1
    line = one_error_line(capsys)
    assert "user_id='seven'" in line and "INT64" in line, line


def test_redis_down_is_one_line(tmp_path, capsys):
    from feast_sequence.testing.local_redis import LocalRedis

    from repos import applied_store, sequence_online

    with LocalRedis() as server:
        online = sequence_online(f"{server.connection_string},socket_timeout=1,socket_connect_timeout=0.5", retries=0)
        store = applied_store(tmp_path / "repo", "down", online, objects(tmp_path))
        server.kill()
        args = ["get-online-features", "--repo", str(store.repo_path), "-e", "user_id=7", "-f", "clicks:item"]
        assert main(args) == 1
        line = one_error_line(capsys)
        assert line.startswith("Error: SequenceStoreUnavailableError") and "Redis" in line, line
