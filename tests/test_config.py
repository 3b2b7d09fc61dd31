import pytest

from mmsafe.config import ConfigError, load_config


def test_yaml_with_args_and_flag_override(tmp_path):
    path = tmp_path / "scan.yaml"
    path.write_text(
        "target: {name: reader, args: {max_new_tokens: 32}}\n"
        "dataset: mini\n"
        "attacks: [none, {name: figstep, args: {steps: 4}}]\n"
        "judges: keywords,keywords:gcg\n"
        "limit: 10\n"
    )
    cfg = load_config(path, limit=3)
    assert [t.args for t in cfg.targets] == [{"max_new_tokens": 32}]
    assert [a.label for a in cfg.attacks] == ["none", 'figstep{"steps":4}']
    assert [j.label for j in cfg.judges] == ["keywords", "keywords:gcg"]
    assert cfg.limit == 3
    assert load_config(path, datasets="figstep:x.csv").datasets[0].args == {"_": "x.csv"}


def test_typo_in_yaml_names_the_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("atacks: figstep\n")
    with pytest.raises(ConfigError, match="bad.yaml.*atacks"):
        load_config(path)


def test_bad_yaml_and_missing_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("target: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml: not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")


def test_name_value_is_converted_to_the_first_parameters_type():
    from mmsafe.attacks import attacks
    from mmsafe.datasets import datasets
    from mmsafe.judges import judges

    harmful, benign = datasets.build("mini:false"), datasets.build("mini:true")
    assert harmful.benign is False and benign.benign is True
    assert not any(s.benign for s in harmful.load()) and all(s.benign for s in benign.load())
    assert judges.build("contains:123").text == "123"  # declared str: stays as written
    assert attacks.build("hijack:unknown").output == "unknown"
