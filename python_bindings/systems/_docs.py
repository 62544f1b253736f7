"""docs/SYSTEMS.md, generated from the specs: ``python -m vkbands.systems > docs/SYSTEMS.md`` (the test
suite checks that the committed file is what this writes)."""
from __future__ import annotations

from ._registry import get, get_init

__all__ = ["markdown"]


def _cell(text) -> str:
    return str(text).replace("|", "\\|")


def markdown(names=None) -> str:
    """The systems' parameter tables as Markdown (``names``: default the built-in systems)."""
    from . import BUILTIN
    lines = ["<!-- Generated from the system specs (python -m vkbands.systems > docs/SYSTEMS.md); "
             "do not edit. -->",
             "# vkbands systems", "",
             "Each system is one module of `vkbands.systems`; its parameters, ranges and defaults below come "
             "from that module's spec, as do the options of `vkbands rollout` / `vkbands view`, the checks of "
             "`vkbands.Setup` and `rollout()`, and the viewer's panel. Live parameters can change while the "
             "viewer runs.", "",
             "Per-member values (SPEC 3.2b, Python only): every numeric parameter may be given to `rollout()`, "
             "`Simulation()` and `set_params()` as one number per batch member instead of one number (a list or "
             "array of B values; explicit `rates` as a (B, L) array, or (B, 1) for one factor per member); "
             "member b then evolves bit for bit as a separate run with its own values. `params` reports such a "
             "value as a list of B floats (`rates`: B rows). Choices, integers and matrices (`phi`, `C`, "
             "`coupling_seed`, `preset`) are shared by the batch.", ""]
    for name in (BUILTIN if names is None else names):
        spec = get(name)
        inits = ", ".join(f"`{i}`" for i in spec.inits)
        lines += [f"## `{spec.name}`: {spec.title}", "",
                  f"{spec.reference}. Fields per member: {', '.join(spec.fields)} (bands, pictures and observables "
                  f"of `{spec.observed}`); dims: {' or '.join(map(str, spec.dims))}; default size: "
                  + ", ".join(f"p**{L} ({d}-D)" for d, L in spec.default_depth.items())
                  + f"; initial states: {inits} (default `{spec.inits[0]}`); pictures: `{spec.picture.cmap}` "
                  f"colour map in files, `{spec.picture.view_cmap}` in the viewer.", ""]
        if spec.presets:
            lines += ["Presets: " + "; ".join(f"`{k}` ({', '.join(f'{p}={x:g}' for p, x in vals.items())})"
                                               for k, vals in spec.presets.items()), ""]
        lines += ["| parameter | default | allowed | live | meaning |", "|---|---|---|---|---|"]
        for p in spec.params:
            opt = f"`--{p.name.replace('_', '-')}`" if p.cli else "(Python only)"
            lines.append(f"| `{p.name}` {opt} | {_cell(p.default_text())} | {_cell(p.allowed())} | "
                         f"{'yes' if p.live else ''} | {_cell(p.help)} |")
        lines.append("")
    seen = []
    for name in (BUILTIN if names is None else names):
        for init_name in get(name).inits:
            init = get_init(init_name)
            if init.options and init.name not in seen:
                seen.append(init.name)
    for init_name in seen:
        init = get_init(init_name)
        lines += [f"## Initial state `{init.name}` options", "", "| option | default | allowed | meaning |",
                  "|---|---|---|---|"]
        for o in init.options:
            lines.append(f"| `--{o.name.replace('_', '-')}` | {_cell(o.default_text())} | {_cell(o.allowed())} | "
                         f"{_cell(o.help)} |")
        lines.append("")
    return "\n".join(lines)
