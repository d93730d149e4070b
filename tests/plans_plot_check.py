#!/usr/bin/python3
"""plans_plot_check.py: the placement heatmap (tools/plans_plot.c) through
tests/plans_plot_dump, standard library only.

    /usr/bin/python3 plans_plot_check.py PATH_TO_plans_plot_dump

For a small log (50 records, 3 layers, 8 experts), the same with 6 layers,
and a large one (1000 records, 40 layers, 256 experts; once with the dump's
smooth loads, once with noise, the worst case for size):
- the SVG parses as XML and holds one panel per layer;
- the PNG has the PNG signature, and its IHDR size is the SVG's size (both
  come from one layout: one SVG user unit is one PNG pixel);
- more layers make a taller picture of the same width;
- the large files are at most 5 MB each.
Then the failures: an empty log, and a file in a folder that does not exist
(SVG, then PNG) exit 1 with a message naming the problem or the path.

How panels are counted: cairo 1.16's SVG surface cannot write ids of our
own, so the test relies on how plans_plot.c draws: each panel's heatmap is
one image surface painted at scale 1, and nothing else is an image. Cairo
writes each image once as an <image id="imageN"> under <defs> and places it
with <use xlink:href="#imageN" transform="matrix(1,0,0,1,x,y)">. So: as
many <image> elements as layers, each used once, all at the same x, one
under the other. Exits non-zero on the first failure.
"""
import os
import re
import struct
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

SVG = "{http://www.w3.org/2000/svg}"
XLINK = "{http://www.w3.org/1999/xlink}"
MAX_BYTES = 5 * 1000 * 1000


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def run(dump, args):
    p = subprocess.run([dump] + [str(a) for a in args], capture_output=True, text=True,
                       timeout=300)
    return p.returncode, p.stdout + p.stderr


def svg_panels(path):
    """(width, height, [(x, y, w, h) per panel]) of the SVG at path."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        fail("%s does not parse as XML: %s" % (path, e))
    if root.tag != SVG + "svg":
        fail("%s: root element is %s, not svg" % (path, root.tag))
    box = root.get("viewBox", "").split()
    if len(box) != 4 or box[:2] != ["0", "0"]:
        fail("%s: viewBox is '%s'" % (path, root.get("viewBox")))
    width, height = float(box[2]), float(box[3])
    images = {}
    for im in root.iter(SVG + "image"):
        href = im.get(XLINK + "href", "")
        if not href.startswith("data:image/png;base64,"):
            fail("%s: an <image> that is not an embedded PNG" % path)
        images[im.get("id")] = (float(im.get("width")), float(im.get("height")))
    uses = {}
    for u in root.iter(SVG + "use"):
        ref = u.get(XLINK + "href", "")
        if ref[1:] in images:
            m = re.fullmatch(r"matrix\(1,0,0,1,([-0-9.e]+),([-0-9.e]+)\)", u.get("transform", ""))
            if not m:
                fail("%s: %s is placed with '%s', not at scale 1" % (path, ref, u.get("transform")))
            if ref[1:] in uses:
                fail("%s: %s is used twice" % (path, ref))
            uses[ref[1:]] = (float(m.group(1)), float(m.group(2)))
    if set(uses) != set(images):
        fail("%s: images %s, used %s" % (path, sorted(images), sorted(uses)))
    panels = sorted((uses[i] + images[i] for i in images), key=lambda p: p[1])
    for a, b in zip(panels, panels[1:]):
        if a[0] != b[0] or a[2] != b[2] or b[1] < a[1] + a[3]:
            fail("%s: panels %s and %s are not one under the other" % (path, a, b))
    for x, y, w, h in panels:
        if x < 0 or y < 0 or x + w > width or y + h > height:
            fail("%s: panel %s outside the %gx%g picture" % (path, (x, y, w, h), width, height))
    return width, height, panels


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        fail("%s does not start with the PNG signature" % path)
    if head[12:16] != b"IHDR":
        fail("%s: first chunk is %r, not IHDR" % (path, head[12:16]))
    return struct.unpack(">II", head[16:24])


def draw(dump, tmp, n, L, E, noise=False):
    """Runs the dump; checks both files; returns (width, height, svg bytes, png bytes)."""
    name = "n%d_L%d_E%d%s" % (n, L, E, "_noise" if noise else "")
    svg, png = os.path.join(tmp, name + ".svg"), os.path.join(tmp, name + ".png")
    rc, out = run(dump, [n, L, E, svg, png] + (["noise"] if noise else []))
    if rc != 0:
        fail("%s: dump exited %d: %s" % (name, rc, out.strip()))
    width, height, panels = svg_panels(svg)
    if len(panels) != L:
        fail("%s: %d panels in the SVG, want one per layer (%d)" % (name, len(panels), L))
    pw, ph = png_size(png)
    if (pw, ph) != (width, height):
        fail("%s: PNG is %dx%d, the SVG %gx%g" % (name, pw, ph, width, height))
    sb, pb = os.path.getsize(svg), os.path.getsize(png)
    print("ok   %s: %d panels, %dx%d px, SVG %d bytes, PNG %d bytes"
          % (name, len(panels), pw, ph, sb, pb))
    return pw, ph, sb, pb


def main():
    if len(sys.argv) != 2:
        print("usage: plans_plot_check.py PATH_TO_plans_plot_dump")
        return 2
    dump = sys.argv[1]
    with tempfile.TemporaryDirectory() as tmp:
        w3, h3, _, _ = draw(dump, tmp, 50, 3, 8)
        w6, h6, _, _ = draw(dump, tmp, 50, 6, 8)
        if w6 != w3 or h6 <= h3:
            fail("6 layers draw %dx%d, 3 layers %dx%d: want the same width, taller" % (w6, h6, w3, h3))
        print("ok   more layers, taller picture (%d -> %d px)" % (h3, h6))
        for noise in (False, True):
            _, _, sb, pb = draw(dump, tmp, 1000, 40, 256, noise)
            if sb > MAX_BYTES or pb > MAX_BYTES:
                fail("1000 x 40 x 256%s: SVG %d bytes, PNG %d bytes, want <= %d each"
                     % (" (noise)" if noise else "", sb, pb, MAX_BYTES))
        print("ok   the large files are at most %d bytes" % MAX_BYTES)

        rc, out = run(dump, [0, 3, 8, os.path.join(tmp, "e.svg"), os.path.join(tmp, "e.png")])
        if rc != 1 or "nothing to draw" not in out:
            fail("an empty log: exit %d, '%s'; want 1 and 'nothing to draw'" % (rc, out.strip()))
        print("ok   an empty log: %s" % out.strip())

        ok_svg, ok_png = os.path.join(tmp, "m.svg"), os.path.join(tmp, "m.png")
        for which in ("svg", "png"):
            missing = os.path.join(tmp, "no-such-folder", "m." + which)
            svg, png = (missing, ok_png) if which == "svg" else (ok_svg, missing)
            rc, out = run(dump, [50, 3, 8, svg, png])
            if rc != 1 or missing not in out:
                fail("%s in a missing folder: exit %d, '%s'; want 1 and the path"
                     % (which.upper(), rc, out.strip()))
            print("ok   %s in a missing folder: %s" % (which.upper(), out.strip()))
    print("plans_plot: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
