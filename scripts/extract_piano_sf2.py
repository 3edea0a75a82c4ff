"""Cut one preset (with its instruments and samples) out of a SoundFont 2 file.

The audio writer's piano, `src/pianomuse/soundfonts/piano.sf2`, was made with

    uv run python scripts/extract_piano_sf2.py FluidR3_GM.sf2 piano.sf2 --bank 0 --preset 0

from FluidR3_GM.sf2 (Frank Wen, MIT; Debian's fluid-soundfont-gm package). The whole General
MIDI set is 141 MB; its grand piano alone is a few MB, small enough to install with the
project.

Written by hand: no maintained Python library writes SoundFont files (sf2utils only reads).
The format (SoundFont 2.04 specification): a RIFF file of three lists, INFO (names), sdta
(the 16-bit samples, "smpl") and pdta (nine tables, each ending in a terminal record:
presets → preset zones → generators and modulators → instruments → instrument zones →
generators and modulators → sample headers). A zone's generators point down the chain by
index: generator 41 names an instrument, 53 a sample.
"""

from __future__ import annotations

import argparse
import struct
from pathlib import Path

# Record layouts of the pdta tables (little-endian), SoundFont 2.04 section 7.
LAYOUT = {
    "phdr": "<20sHHHIII",
    "pbag": "<HH",
    "pmod": "<HHhHH",
    "pgen": "<HH",
    "inst": "<20sH",
    "ibag": "<HH",
    "imod": "<HHhHH",
    "igen": "<HH",
    "shdr": "<20sIIIIIBbHH",
}
INSTRUMENT, SAMPLE_ID = 41, 53  # the generators that point to an instrument and a sample
ROOT_KEY = 58  # overridingRootKey: the key a zone's sample sounds at unshifted
PAD = 46  # zero sample points the specification requires after every sample


def chunks(data: bytes, start: int, end: int) -> dict[str, bytes]:
    """The sub-chunks of a RIFF list body, by id (a LIST by its list type)."""
    out, pos = {}, start
    while pos + 8 <= end:
        cid, size = struct.unpack_from("<4sI", data, pos)
        body = data[pos + 8 : pos + 8 + size]
        out[(body[:4] if cid == b"LIST" else cid).decode()] = body[4:] if cid == b"LIST" else body
        pos += 8 + size + (size & 1)
    return out


def table(pdta: dict[str, bytes], name: str) -> list[tuple]:
    return list(struct.iter_unpack(LAYOUT[name], pdta[name]))


def riff(cid: str, body: bytes) -> bytes:
    return struct.pack("<4sI", cid.encode(), len(body)) + body + b"\0" * (len(body) & 1)


def listed(kind: str, parts: list[bytes]) -> bytes:
    return riff("LIST", kind.encode() + b"".join(parts))


def zones(bags: list[tuple], first: int, last: int) -> list[tuple[range, range]]:
    """The generator and modulator index ranges of bags first..last-1."""
    return [(range(bags[b][0], bags[b + 1][0]), range(bags[b][1], bags[b + 1][1]))
            for b in range(first, last)]  # fmt: skip


def extract(src: bytes, bank: int, preset: int) -> bytes:
    body = chunks(src, 12, len(src))
    sdta = chunks(body["sdta"], 0, len(body["sdta"]))
    pdta = chunks(body["pdta"], 0, len(body["pdta"]))
    smpl = sdta["smpl"]
    phdr, pbag, pmod, pgen = (table(pdta, n) for n in ("phdr", "pbag", "pmod", "pgen"))
    inst, ibag, imod, igen = (table(pdta, n) for n in ("inst", "ibag", "imod", "igen"))
    shdr = table(pdta, "shdr")
    [p] = [i for i, h in enumerate(phdr[:-1]) if (h[2], h[1]) == (bank, preset)]
    pzones = zones(pbag, phdr[p][3], phdr[p + 1][3])
    instruments = sorted({pgen[g][1] for gens, _ in pzones for g in gens
                          if pgen[g][0] == INSTRUMENT})  # fmt: skip
    izones = {i: zones(ibag, inst[i][1], inst[i + 1][1]) for i in instruments}

    def root_of(zone: tuple[range, range]) -> tuple[int, int] | None:
        """(sample, root key) a zone plays: generator 58 where the zone sets it, else the
        sample header's own root."""
        gens = {igen[g][0]: igen[g][1] for g in zone[0]}
        if SAMPLE_ID not in gens:
            return None  # a global zone
        s = gens[SAMPLE_ID]
        root = gens.get(ROOT_KEY, 0xFFFF)
        return s, root if root <= 127 else shdr[s][6]

    # The root key is baked into a sample header of its own for each (sample, root) pair and
    # generator 58 dropped, so that a player reading only the header plays in tune: FluidR3
    # gives every piano sample the header root 60, and symusic's synthesizer, which ignores
    # generator 58, played its piano up to 14 semitones sharp.
    used: list[tuple[int, int]] = []
    for i in instruments:
        for zone in izones[i]:
            if (pair := root_of(zone)) is None:
                continue
            s, root = pair
            linked = [(shdr[s][8], root)] if shdr[s][9] & 6 else []  # a stereo pair's other side
            used += [q for q in [pair, *linked] if q not in used]
    header = {pair: k for k, pair in enumerate(used)}
    new_smpl, data_at = bytearray(), {}
    for s in dict.fromkeys(s for s, _ in used):
        start, end = shdr[s][1], shdr[s][2]
        data_at[s] = len(new_smpl) // 2
        new_smpl += smpl[2 * start : 2 * end] + b"\0" * (2 * PAD)
    new_shdr = []
    for s, root in used:
        name, start, end, loop0, loop1, rate, _, corr, link, kind = shdr[s]
        at, link = data_at[s], header[(link, root)] if kind & 6 else 0
        new_shdr.append((name, at, at + end - start, at + loop0 - start, at + loop1 - start,
                         rate, root, corr, link, kind))  # fmt: skip
    new_shdr.append((b"EOS", 0, 0, 0, 0, 0, 0, 0, 0, 0))

    inst_index = {i: k for k, i in enumerate(instruments)}
    new_inst, i_bags, i_gens, i_mods = [], [], [], []
    for i in instruments:
        new_inst.append((inst[i][0], len(i_bags)))
        for zone in izones[i]:
            i_bags.append((len(i_gens), len(i_mods)))
            pair = root_of(zone)
            for g in zone[0]:
                op, amount = igen[g]
                if op != ROOT_KEY:
                    i_gens.append((op, header[pair] if op == SAMPLE_ID else amount))
            i_mods.extend(imod[m] for m in zone[1])
    new_inst.append((b"EOI", len(i_bags)))
    i_bags.append((len(i_gens), len(i_mods)))
    i_gens.append((0, 0))
    i_mods.append((0, 0, 0, 0, 0))

    def rebuilt(zs, gens, mods, point, index):
        """Bags, generators and modulators of zones, with `point` generators remapped."""
        bags, g_out, m_out = [], [], []
        for g_range, m_range in zs:
            bags.append((len(g_out), len(m_out)))
            for g in g_range:
                op, amount = gens[g]
                g_out.append((op, index[amount] if op == point else amount))
            m_out.extend(mods[m] for m in m_range)
        return bags, g_out, m_out

    p_bags, p_gens, p_mods = rebuilt(pzones, pgen, pmod, INSTRUMENT, inst_index)
    name, _, _, _, lib, genre, morph = phdr[p]
    new_phdr = [(name, 0, 0, 0, lib, genre, morph), (b"EOP", 0, 0, len(p_bags), 0, 0, 0)]
    p_bags.append((len(p_gens), len(p_mods)))
    p_gens.append((0, 0))
    p_mods.append((0, 0, 0, 0, 0))

    def packed(name, rows):
        return riff(name, b"".join(struct.pack(LAYOUT[name], *r) for r in rows))

    info = chunks(body["INFO"], 0, len(body["INFO"]))
    comment = f"Bank {bank} preset {preset} of {info.get('INAM', b'').rstrip(bytes(1)).decode()}"
    info_parts = [riff("ifil", info["ifil"]), riff("isng", info.get("isng", b"EMU8000\0")),
                  riff("INAM", name.rstrip(b"\0") + b"\0"),
                  riff("ICMT", comment.encode() + b"\0")]  # fmt: skip
    info_parts += [riff(k, info[k]) for k in ("ICOP", "IENG") if k in info]
    tables = {"phdr": new_phdr, "pbag": p_bags, "pmod": p_mods, "pgen": p_gens,
              "inst": new_inst, "ibag": i_bags, "imod": i_mods, "igen": i_gens,
              "shdr": new_shdr}  # fmt: skip
    pdta_parts = [packed(name, rows) for name, rows in tables.items()]
    sfbk = b"sfbk" + listed("INFO", info_parts) + listed("sdta", [riff("smpl", bytes(new_smpl))])
    sfbk += listed("pdta", pdta_parts)
    return riff("RIFF", sfbk)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--bank", type=int, default=0)
    ap.add_argument("--preset", type=int, default=0)
    a = ap.parse_args()
    data = extract(a.source.read_bytes(), a.bank, a.preset)
    a.out.write_bytes(data)
    print(f"{a.out}: {len(data) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
