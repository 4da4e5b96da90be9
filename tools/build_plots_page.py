"""Build ``.dvc/plots/offline.html``: the page template of ``dvc plots show/diff`` with vega,
vega-lite and vega-embed inlined, so the plots render with no network (DVC's own template loads
them from a CDN and shows a blank page offline).

The libraries come from the npm registry (``npm pack``; BSD-3-Clause, licence text kept in the
page). Run it again to move to other versions, and commit the result:

    python tools/build_plots_page.py --vega 5.33.1 --vega-lite 5.23.0 --vega-embed 6.29.0
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tarfile
import tempfile
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / ".dvc" / "plots" / "offline.html"

PAGE = """<!DOCTYPE html>
<html>
<head>
    {{refresh_tag}}
    <meta charset="utf-8">
    <title>realfake plots</title>
    <!-- vega {vega}, vega-lite {vega_lite}, vega-embed {vega_embed}, inlined from their npm packages by
         tools/build_plots_page.py: no request leaves the page. Their licences follow each script. -->
{scripts}
    <style>
        body {{ font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 16px; }}
        table {{ border-spacing: 15px; }}
        img {{ max-width: 100%; }}
    </style>
</head>
<body>
    <h1 style="font-size: 20px">realfake: DVC plots</h1>
    {{plot_divs}}
</body>
</html>
"""
FORBIDDEN = ("</script", "<!--", "<script", "{plot_divs}", "{scripts}", "{refresh_tag}")


def fetch(package: str, version: str, workdir: Path) -> tuple[str, str]:
    """(minified build, licence text) of ``package@version`` from the npm registry."""
    name = subprocess.run(["npm", "pack", f"{package}@{version}", "--silent"], cwd=workdir, check=True,
                          capture_output=True, text=True).stdout.strip().splitlines()[-1]
    with tarfile.open(workdir / name) as tar:
        code = tar.extractfile(f"package/build/{package}.min.js").read().decode()
        names = tar.getnames()
        if "package/LICENSE" in names:
            licence = tar.extractfile("package/LICENSE").read().decode()
        else:  # vega ships no LICENSE file; its package.json names the licence
            meta = json.loads(tar.extractfile("package/package.json").read())
            licence = f"Licence: {meta.get('license')}. Copyright the Vega authors, {meta.get('homepage', '')}\n"
    bad = [s for s in FORBIDDEN if s in code]
    if bad:
        raise SystemExit(f"{package}@{version} contains {bad}: it cannot be inlined in the page as is")
    return code, licence


def main() -> None:
    """Fetch the three libraries and write the page template."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vega", default="5.33.1")
    p.add_argument("--vega-lite", default="5.23.0")
    p.add_argument("--vega-embed", default="6.29.0")
    args = p.parse_args()
    versions = {"vega": args.vega, "vega-lite": args.vega_lite, "vega-embed": args.vega_embed}
    scripts = []
    with tempfile.TemporaryDirectory() as tmp:
        for package, version in versions.items():
            code, licence = fetch(package, version, Path(tmp))
            comment = licence.replace("*/", "* /")
            scripts.append(f"    <script>/* {package}@{version}\n{comment}*/\n{code}\n    </script>")
    # SVG, not vega-embed's default canvas: axis titles and labels are text a reader can select and search.
    scripts.append("    <script>window.vegaEmbed = ((embed) => (el, spec, opt) =>\n"
                   "        embed(el, spec, Object.assign({renderer: 'svg'}, opt)))(window.vegaEmbed);</script>")
    page = PAGE.format(vega=args.vega, vega_lite=args.vega_lite, vega_embed=args.vega_embed,
                       scripts="\n".join(scripts))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(page, encoding="utf-8")
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
