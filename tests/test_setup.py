"""vkbands.Setup and validation from the system specs (issue 9): every option that is not allowed, or
that would be ignored, is refused once, naming the option, the value and what is allowed -- through
``Setup`` / ``rollout()`` and through ``vkbands rollout`` in-process (status 2, one stderr line);
the CLI ``--help``, the viewer panel's widgets and docs/SYSTEMS.md come from the specs."""
import re
from pathlib import Path

import numpy as np
import pytest

import vkbands
from vkbands import init
from vkbands import reference as R
from vkbands import systems
from vkbands.rollout_cli import build_parser
from vkbands.rollout_cli import main as rollout_main
from vkbands.setup import Setup, options_for
from vkbands.viewer import panel

NAN, INF = float("nan"), float("inf")

# (id, Setup keywords, command line, fragments of the Python message, fragments of the CLI message)
SETUP_CASES = [
    ("tau=-1", dict(system="tree", tau=-1), ["--tau", "-1"], ["tau=-1", "allowed: a finite number > 0"],
     ["--tau -1", "allowed: a finite number > 0"]),
    ("tau=0", dict(system="tree", tau=0), ["--tau", "0"], ["tau=0", "out of range", "> 0"], ["--tau 0", "> 0"]),
    ("tau=nan", dict(system="tree", tau=NAN), ["--tau", "nan"], ["tau=nan", "not finite", "> 0"],
     ["--tau nan", "not finite", "> 0"]),
    ("F=-1", dict(system="grayscott", F=-1), ["--system", "grayscott", "--F", "-1"], ["F=-1", ">= 0"],
     ["--F -1", ">= 0"]),
    ("dt=inf", dict(system="grayscott", dt=INF), ["--system", "grayscott", "--dt", "inf"],
     ["dt=inf", "not finite", "> 0"], ["--dt inf", "not finite", "> 0"]),
    ("arity=0", dict(system="tree", arity=0), ["--arity", "0"], ["arity=0", "an integer >= 2"],
     ["--arity 0", "an integer >= 2"]),
    ("rates=abc", dict(system="tree", rates="abc"), ["--rates", "abc"], ["rates='abc'", "not a number",
     "comma-separated numbers"], ["--rates abc", "not a number", "6 comma-separated numbers"]),
    ("rates-length", dict(system="coupled", depth=3, rates=[0.5, 0.6]), ["--system", "coupled", "--depth", "3",
     "--rates", "0.5,0.6"], ["rates=[0.5, 0.6]", "2 values for L = 3"], ["--rates 0.5,0.6", "3 comma-separated"]),
    ("size+depth", dict(system="tree", size=729, depth=5), ["--size", "729", "--depth", "5"],
     ["size=729", "depth=5", "give one"], ["--size 729", "--depth 5", "give one"]),
    ("size-not-power", dict(system="tree", size=100), ["--size", "100"], ["size=100", "power", "81, 243"],
     ["--size 100", "power"]),
    ("grayscott-init", dict(system="grayscott", init="impulse"), ["--system", "grayscott", "--init", "impulse"],
     ["init='impulse'", "does not apply", "allowed: patch"], ["--init impulse", "--system grayscott",
                                                               "allowed: patch"]),
    ("unknown-init", dict(system="tree", init="spiral"), ["--init", "spiral"], ["init='spiral'", "band-pure"],
     ["--init spiral", "band-pure"]),
    ("eps-for-tree", dict(system="tree", eps=0.1), ["--eps", "0.1"], ["eps=0.1", "does not apply",
     "rates, tau, alpha"], ["--eps 0.1", "does not apply", "--system tree"]),
    ("preset-for-heat", dict(system="heat", preset="spots"), ["--system", "heat", "--preset", "spots"],
     ["preset='spots'", "does not apply", "allowed: alpha"], ["--preset spots", "does not apply"]),
    ("dims-for-heat", dict(system="heat", dims=1), ["--system", "heat", "--dims", "1"], ["dims=1", "allowed: 2"],
     ["--dims 1", "allowed: 2"]),
    ("band-without-band-pure", dict(system="tree", band=2), ["--band", "2"], ["band=2", "init='band-pure' only"],
     ["--band 2", "--init band-pure only"]),
    ("band-out-of-range", dict(system="tree", depth=3, init="band-pure", band=3),
     ["--depth", "3", "--init", "band-pure", "--band", "3"], ["band=3", "[0, 2]"], ["--band 3", "[0, 2]"]),
    ("mix-eps-without-mix", dict(system="tree", init="band-pure", mix_eps=0.2),
     ["--init", "band-pure", "--mix-eps", "0.2"], ["mix_eps=0.2", "style='mix'"], ["--mix-eps 0.2", "--style mix"]),
    ("rates-and-tau", dict(system="tree", rates=[0.5], tau=2.0), ["--rates", "0.5", "--tau", "2"],
     ["rates=[0.5]", "tau=2.0", "give one"], ["--rates 0.5", "--tau 2", "give one"]),
    ("phi", dict(system="coupled", phi="cube"), ["--system", "coupled", "--phi", "cube"],
     ["phi='cube'", "tanh, sign, square"], ["--phi cube", "tanh, sign, square"]),
    ("batch=0", dict(system="heat", batch=0), ["--system", "heat", "--batch", "0"], ["batch=0", ">= 1"],
     ["--batch 0", ">= 1"]),
    ("system", dict(system="wave"), ["--system", "wave"], ["system='wave'", "tree, coupled, heat, grayscott"],
     ["--system wave", "tree, coupled, heat, grayscott"]),
]


def _setup(kw):
    kw = dict(kw)
    return Setup(kw.pop("system"), **kw)


@pytest.mark.parametrize("case", SETUP_CASES, ids=[c[0] for c in SETUP_CASES])
def test_setup_refuses(case):
    _, kw, _, python, _ = case
    with pytest.raises(ValueError) as e:
        _setup(kw)
    for fragment in python:
        assert fragment in str(e.value), (fragment, str(e.value))


@pytest.mark.parametrize("case", SETUP_CASES, ids=[c[0] for c in SETUP_CASES])
def test_cli_refuses_once(case, tmp_path, capsys):
    _, _, argv, _, cli = case
    out = tmp_path / "never"
    assert rollout_main(argv + ["--steps", "3", "--out", str(out)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vkbands rollout: error: "), captured.err
    for fragment in cli:
        assert fragment in lines[0], (fragment, lines[0])
    assert not out.exists() and captured.out == ""


# Parameters given straight to rollout() with an x0: the same checks, from the same specs.
ROLLOUT_CASES = [
    ("tree", dict(tau=-1), ["tau=-1", "> 0"]),
    ("tree", dict(tau=0), ["tau=0", "> 0"]),
    ("tree", dict(tau=NAN), ["tau=nan", "not finite"]),
    ("tree", dict(arity=0), ["arity=0", ">= 2"]),
    ("tree", dict(rates="abc"), ["rates='abc'", "not a number"]),
    ("tree", dict(rates=[0.5], tau=1.0), ["rates=[0.5]", "tau=1.0", "give one"]),
    ("grayscott", dict(F=-1), ["F=-1", ">= 0"]),
    ("grayscott", dict(dt=INF), ["dt=inf", "not finite"]),
    ("heat", dict(alpha=0.3), ["alpha=0.3", "[0, 0.25]"]),
    ("coupled", dict(eps=NAN), ["eps=nan", "not finite"]),
]


def _x0(system):
    return {"tree": init.random((2, 81), seed=0), "coupled": init.random((2, 81), seed=0),
            "heat": init.random((2, 27, 27), seed=0), "grayscott": init.grayscott((2, 27, 27))}[system]


@pytest.mark.parametrize("system,params,fragments", ROLLOUT_CASES)
def test_rollout_refuses_before_running(ctx, system, params, fragments):
    dims = 1 if system in ("tree", "coupled") else None
    with pytest.raises(ValueError) as e:
        vkbands.rollout(system, _x0(system), 3, dims=dims, ctx=ctx, progress=False, **params)
    for fragment in fragments:
        assert fragment in str(e.value), (fragment, str(e.value))


@pytest.mark.parametrize("steps", [2.5, -1, "x"])
def test_steps_must_be_a_non_negative_integer(ctx, steps, tmp_path, capsys):
    with pytest.raises(ValueError, match=rf"steps={steps!r}: .*allowed: an integer >= 0"):
        vkbands.rollout("tree", _x0("tree"), steps, dims=1, ctx=ctx)
    with pytest.raises(ValueError, match=r"steps=.*allowed: an integer >= 0"):
        vkbands.rollout(Setup("tree", depth=2), steps=steps, ctx=ctx)
    assert rollout_main(["--steps", str(steps), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip() == (f"vkbands rollout: error: --steps {steps}: "
                                               f"{'out of range' if steps == -1 else 'not an integer' if steps == 2.5 else 'not a number'}"
                                               "; allowed: an integer >= 0")


def test_unknown_keywords_are_type_errors():
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['foo'\]"):
        Setup("tree", foo=1)
    with pytest.raises(TypeError, match="with a Setup"):
        vkbands.rollout(Setup("tree", depth=2), steps=1, tau=2.0)


def test_setup_builds_the_cli_initial_states():
    """The states `vkbands rollout` always made, now from one place (seeded: same values)."""
    s = Setup("tree", depth=4, batch=3, init="band-pure", band=1, style="randphase", seed=5)
    assert s.shape == (3, 81) and s.dims == 1 and s.levels == 4
    np.testing.assert_array_equal(s.x0(), init.band_pure((3, 81), 3, 1, style="randphase", seed=5, dims=1))
    s = Setup("tree", dims=2, init="smooth", seed=1)         # default size: 3**5 x 3**5
    np.testing.assert_array_equal(s.x0(), init.smooth((1, 243, 243), arity=3, cutoff_level=2, seed=1, dims=2))
    s = Setup("grayscott", depth=3, batch=2, seed=7)
    assert s.init == "patch" and s.shape == (2, 2, 27, 27)
    np.testing.assert_array_equal(s.x0(), init.grayscott((2, 27, 27), seed=7))
    s = Setup("heat", size=16, arity=2, init="impulse", seed=3)
    np.testing.assert_array_equal(s.x0(), init.impulse((1, 16, 16), seed=3, dims=2))
    assert Setup("coupled", seed=9).params == dict(arity=3, coupling_seed=9)       # the seed seeds C too
    assert Setup("coupled", seed=9, coupling_seed=2).params["coupling_seed"] == 2
    assert Setup("coupled").spatial == (729,) and Setup("coupled", dims=2).spatial == (81, 81)
    assert Setup("tree", depth=4, rates="0.5,0.9,0.99,1").params == dict(arity=3, rates=[0.5, 0.9, 0.99, 1.0])


def test_with_system_and_replace():
    s = Setup("grayscott", F=0.03, preset="spots", depth=3, seed=4)
    t = s.with_system("coupled")
    assert t.options == dict(depth=3, seed=4) and t.system == "coupled"
    # a parameter of the same name but another meaning (tree alpha vs heat alpha) is dropped
    assert Setup("tree", alpha=2.0, init="band-pure", band=1).with_system("heat").options == \
        dict(init="band-pure", band=1)
    assert Setup("tree", alpha=2.0, dims=1).with_system("coupled").options == dict(alpha=2.0, dims=1)
    assert Setup("tree", dims=1, init="impulse").with_system("grayscott").options == {}
    assert s.replace(F=None, k=0.05).options == dict(preset="spots", depth=3, seed=4, k=0.05)
    assert options_for("heat", dict(system="tree", tau=1, depth=2, dims=1)) == dict(depth=2)


def test_rollout_from_a_setup(ctx):
    s = Setup("heat", depth=3, batch=2, init="smooth", seed=3, alpha=0.1)
    a = vkbands.rollout(s, steps=6, every=3, ctx=ctx, progress=False)
    b = vkbands.rollout("heat", s.x0(), 6, every=3, alpha=0.1, ctx=ctx, progress=False)
    np.testing.assert_array_equal(a.final, b.final)
    c = vkbands.rollout(s, 6, every=3, ctx=ctx, progress=False)          # rollout(setup, steps)
    np.testing.assert_array_equal(c.final, b.final)
    assert a.params == dict(arity=3, alpha=0.1)


def test_help_lists_every_parameter_of_every_system():
    text = build_parser().format_help()
    flat = " ".join(text.split())
    for name in systems.names():
        spec = systems.get(name)
        assert re.search(rf"^  {name} +{re.escape(', '.join(spec.param_names))}$", text, re.M), name
        for p in spec.params:
            if p.cli:
                assert re.search(rf"--{re.escape(p.name.replace('_', '-'))}\b", text), p.name
                assert " ".join(p.help.split()) in flat, p.help
            else:
                assert f"{p.name} ({name})" in flat, p.name        # the Python-only list
    for opt in ("--init", "--band", "--style", "--sparse-m", "--mix-band", "--mix-eps", "--size", "--depth"):
        assert opt in text


def test_viewer_cli_has_the_same_setup_options():
    import argparse
    from vkbands.viewer.cli import add_parser
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    view = parser._subparsers._group_actions[0].choices["view"]
    options = {a.dest for a in view._actions}
    cli_only = {p.name for n in systems.names() for p in systems.get(n).params if not p.cli}
    assert set(vkbands.setup.option_names()) - cli_only <= options
    assert view.get_default("system") == systems.DEFAULT_VIEW


class FakeImgui:
    """Records the widget calls; changes nothing (returns the values it was given)."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        def call(label, value, *args):
            self.calls.append((name, label))
            return False, value
        return call


@pytest.mark.parametrize("name", ["tree", "coupled", "heat", "grayscott"])
def test_panel_widgets_come_from_the_spec(name):
    spec = systems.get(name)
    params = dict(arity=3, **{p.name: p.default for p in spec.params if p.default is not None})
    live = panel.live_widgets(spec, params)
    assert [w.key for w in live] == [p.name for p in spec.live_params]
    for w, p in zip(live, spec.live_params):
        assert (w.lo, w.hi) == p.slider_range() and w.fmt == p.fmt
    imgui = FakeImgui()
    assert panel.draw(imgui, live) == []
    assert imgui.calls == [("slider_float", p.name) for p in spec.live_params]
    restart = panel.restart_widgets(dict(system=name, init=spec.inits[-1]), dict(depth=3))
    keys = [w.key for w in restart]
    assert keys[:6] == ["system", "arity", "depth", "batch", "seed", "init"]
    fixed = [p.name for p in spec.params if not p.live and p.cli]
    assert keys[-len(fixed):] == fixed if fixed else True
    panel.draw(FakeImgui(), restart)


def test_panel_apply_edits_options():
    ed = dict(system="tree", depth=4, size=81, tau=0.5)
    ws = {w.key: w for w in panel.restart_widgets(ed)}
    ed = panel.apply(ed, ws["depth"], 99)                      # clamped; a depth drops the size
    assert ed == dict(system="tree", depth=8, tau=0.5)
    ed = panel.apply(ed, ws["init"], "band-pure")
    ws = {w.key: w for w in panel.restart_widgets(ed)}
    assert "band" in ws and "style" in ws and "mix_eps" not in ws
    ed = panel.apply(ed, ws["style"], "mix")
    ws = {w.key: w for w in panel.restart_widgets(ed)}
    assert ws["mix_band"].value == -1 and ws["mix_band"].optional
    ed = panel.apply(ed, ws["rates"], " 0.5,0.9 ")            # rates replace the tau/alpha profile
    assert ed["rates"] == "0.5,0.9" and "tau" not in ed
    ed = panel.apply(ed, ws["system"], "coupled")
    assert ed == dict(system="coupled", depth=8, init="band-pure", style="mix", rates="0.5,0.9")
    with pytest.raises(ValueError, match="2 values for L = 8"):     # the edited set-up is checked by Setup
        Setup(**ed)


def test_docs_systems_md_is_generated_from_the_specs():
    path = Path(__file__).resolve().parents[1] / "docs" / "SYSTEMS.md"
    if not path.is_file():
        pytest.skip("docs/ is not part of this install")
    assert path.read_text() == systems.markdown(), "regenerate: python -m vkbands.systems > docs/SYSTEMS.md"
