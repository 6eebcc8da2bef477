#!/usr/bin/env python3
"""Verdict agreement between two scanners' per-message results (Markdown report).

  python3 bench/scripts/agreement.py REFERENCE.jsonl CANDIDATE.jsonl \
      [--ref-name spamd] [--cand-name mailborder] [--rules /work/shared/corpus/rules/spamassassin] \
      [--depth 2] [--top 30] [--out report.md] [--fail-under 99]

Both inputs are JSON lines in the format of bench/scripts/spamd-reference.sh (and of
`mbctl scan --json DIR`):
  {"file": "ham/spamassassin/easy_ham/0001...", "score": 1.2, "required": 5.0,
   "is_spam": false, "symbols": ["RULE_A", ...], "ms": 81.0}
Only "file", "is_spam" and "symbols" are required; "score" enables the correlation. Files are
matched by name relative to the corpus root: absolute names under --root are made relative, and
--cand-prefix is prepended to the candidate's names (for a scan of one sub-folder).

Reports: verdict agreement (is_spam equal) per folder (first --depth path components) and
overall, with the confusion matrix; score correlation (Pearson, Spearman, mean |delta|); the symbols
each side fires that the other does not on the same message (top --top per side, with counts);
and the disagreeing files grouped into classes by the symbol differences that explain them.
With --rules, rule scores (score set 0: no Bayes, no network tests) are read from the SA rule
files so that each class shows how many points its symbol difference is worth.
Python 3 stdlib only. Exit status 1 with --fail-under if overall agreement is below it.
"""
import argparse
import glob
import json
import math
import os
import re
import sys
from collections import Counter, defaultdict


# ---------------------------------------------------------------- input
def norm_name(name, root=None, prefix=""):
    """file key: strip an absolute corpus root and "./", then prepend prefix (e.g. "ham/spamassassin/"
    when the candidate was run as `mbctl scan --json /work/shared/corpus/ham/spamassassin`)."""
    if root:
        r = root.rstrip("/") + "/"
        if name.startswith(r):
            name = name[len(r):]
    while name.startswith("./"):
        name = name[2:]
    if prefix and not name.startswith(prefix):
        name = prefix.rstrip("/") + "/" + name
    return name


def load_jsonl(path, root=None, prefix=""):
    """-> (dict file -> record, number of bad lines). A file listed twice: the last line wins."""
    recs, bad = {}, 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for ln in f:
            ln = ln.strip()
            if not ln:
                continue
            try:
                r = json.loads(ln)
                name = norm_name(r["file"], root, prefix)
                r["file"] = name
                r["is_spam"] = bool(r["is_spam"])
                r["symbols"] = sorted(set(r.get("symbols") or []))
                if r.get("score") is not None:
                    r["score"] = float(r["score"])
            except (ValueError, KeyError, TypeError):
                bad += 1
                continue
            recs[name] = r
    return recs, bad


RULE_TYPES = ("header", "body", "rawbody", "full", "uri", "meta", "mimeheader", "askdns", "uridnsbl",
              "urirhsbl", "urirhssub", "urifullnsrhssub", "uri_detail", "hashbl_email")


def load_sa_scores(rules_dir, scoreset=0):
    """Rule -> score in `scoreset`, as SpamAssassin computes it from the rule files.

    `score NAME s0 [s1 s2 s3]` lines, files in name order, the last definition wins. A rule
    defined without any score line gets SA's default (Conf/Parser.pm fix_tests): 1.0, 0.01 for
    T_ rules, negated for `tflags ... nice`. This matters for Debian's packaged 4.0.1 rules:
    they lack sa-update's generated 72_scores.cf, so most 72_active.cf rules score 1.0/-1.0.
    Conditional blocks (ifplugin/if) are not evaluated: an approximation good enough to weigh
    symbol differences."""
    scores, tflags, defined = {}, {}, set()
    pat = re.compile(r"^\s*score\s+(\S+)\s+(.*)$")
    tpat = re.compile(r"^\s*tflags\s+(\S+)\s+(.*)$")
    rpat = re.compile(r"^\s*(%s)\s+([A-Za-z0-9_]+)\b" % "|".join(RULE_TYPES))
    for fn in sorted(glob.glob(os.path.join(rules_dir, "*.cf"))):
        with open(fn, encoding="utf-8", errors="replace") as f:
            for ln in f:
                m = rpat.match(ln)
                if m:
                    defined.add(m.group(2))
                    continue
                m = tpat.match(ln)
                if m:
                    tflags[m.group(1)] = m.group(2).split("#", 1)[0].split()
                    continue
                m = pat.match(ln)
                if not m:
                    continue
                vals = m.group(2).split("#", 1)[0].split()
                try:
                    nums = [float(v) for v in vals]
                except ValueError:
                    continue
                if not nums:
                    continue
                scores[m.group(1)] = nums[scoreset] if len(nums) == 4 else nums[0]
    for name in defined:
        if name.startswith("__") or name in scores:
            continue
        d = 0.01 if name.startswith("T_") else 1.0
        scores[name] = -d if "nice" in tflags.get(name, ()) else d
    return scores


# ---------------------------------------------------------------- statistics
def pearson(xs, ys):
    n = len(xs)
    if n < 2:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx == 0 or syy == 0:
        return 1.0 if sxx == syy == 0 and xs == ys else None
    return sxy / math.sqrt(sxx * syy)


def ranks(xs):
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    r = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        avg = (i + j) / 2 + 1
        for k in range(i, j + 1):
            r[order[k]] = avg
        i = j + 1
    return r


CLIP = (-20.0, 50.0)  # GTUBE (1000) and welcomelist (-100) scores would dominate a raw Pearson r


def clip(xs):
    return [min(max(x, CLIP[0]), CLIP[1]) for x in xs]


def spearman(xs, ys):
    return pearson(ranks(xs), ranks(ys)) if len(xs) >= 2 else None


def folder_of(name, depth):
    parts = name.split("/")
    return "/".join(parts[:min(depth, max(1, len(parts) - 1))])


# ---------------------------------------------------------------- analysis
def analyse(ref, cand, depth=2, scores=None):
    common = sorted(set(ref) & set(cand))
    res = {"n_ref": len(ref), "n_cand": len(cand), "common": len(common),
           "only_ref": sorted(set(ref) - set(cand)), "only_cand": sorted(set(cand) - set(ref))}
    per = defaultdict(lambda: {"n": 0, "agree": 0, "ref_spam": 0, "cand_spam": 0, "xs": [], "ys": []})
    conf = Counter()
    ref_only_sym, cand_only_sym = Counter(), Counter()
    ref_only_dis, cand_only_dis = Counter(), Counter()
    ref_fired, cand_fired = Counter(), Counter()
    disagree = []
    xs, ys = [], []
    same_syms = 0
    for name in common:
        a, b = ref[name], cand[name]
        for top in (folder_of(name, 1), folder_of(name, depth)):
            p = per[top]
            p["n"] += 1
            p["agree"] += a["is_spam"] == b["is_spam"]
            p["ref_spam"] += a["is_spam"]
            p["cand_spam"] += b["is_spam"]
            if a.get("score") is not None and b.get("score") is not None:
                p["xs"].append(a["score"])
                p["ys"].append(b["score"])
            if depth == 1:
                break
        conf[(a["is_spam"], b["is_spam"])] += 1
        if a.get("score") is not None and b.get("score") is not None:
            xs.append(a["score"])
            ys.append(b["score"])
        sa, sb = set(a["symbols"]), set(b["symbols"])
        ref_fired.update(sa)
        cand_fired.update(sb)
        ro, co = sa - sb, sb - sa
        ref_only_sym.update(ro)
        cand_only_sym.update(co)
        same_syms += not ro and not co
        if a["is_spam"] != b["is_spam"]:
            ref_only_dis.update(ro)
            cand_only_dis.update(co)
            disagree.append((name, a, b, sorted(ro), sorted(co)))
    res.update(per=per, conf=conf, xs=xs, ys=ys, ref_only_sym=ref_only_sym, cand_only_sym=cand_only_sym,
               ref_only_dis=ref_only_dis, cand_only_dis=cand_only_dis, ref_fired=ref_fired,
               cand_fired=cand_fired, same_syms=same_syms)
    res["agree"] = conf[(True, True)] + conf[(False, False)]
    res["classes"] = classify(disagree, scores)
    return res


def classify(disagree, scores):
    """Group disagreeing files by the symbol difference that explains them.

    A class key is the set of signed symbol differences ("-SYM": only the reference fired it,
    "+SYM": only the candidate did). With scores, symbols worth 0 points are dropped from the key
    (they cannot move a verdict); an empty key means: same scoring symbols, different score."""
    classes = defaultdict(list)
    for name, a, b, ro, co in disagree:
        key = []
        for s in ro:
            if scores is None or scores.get(s, 1.0) != 0:
                key.append("-" + s)
        for s in co:
            if scores is None or scores.get(s, 1.0) != 0:
                key.append("+" + s)
        if scores is not None:
            key.sort(key=lambda k: (-abs(scores.get(k[1:], 1.0)), k))
        classes[tuple(key)].append((name, a, b))
    out = []
    for key, items in classes.items():
        worth = None
        if scores is not None:
            worth = sum((1 if k[0] == "+" else -1) * scores.get(k[1:], 1.0) for k in key)
        dirs = Counter("%s->%s" % (("spam" if a["is_spam"] else "ham"), ("spam" if b["is_spam"] else "ham"))
                       for _, a, b in items)
        out.append({"key": key, "items": items, "worth": worth, "dirs": dirs})
    out.sort(key=lambda c: (-len(c["items"]), c["key"]))
    return out


# ---------------------------------------------------------------- report
def pct(a, b):
    return "%.2f %%" % (100.0 * a / b) if b else "n/a"


def fnum(x, nd=3):
    return "n/a" if x is None else ("%.*f" % (nd, x))


def report(res, ref_name, cand_name, ref_path, cand_path, top=30, scores=None, max_files=200,
           bad=(0, 0), target=99.0):
    R, C = ref_name, cand_name
    w = []
    w.append("# Verdict agreement: %s (reference) vs %s" % (R, C))
    w.append("")
    w.append("* reference: `%s`: %d messages%s" % (ref_path, res["n_ref"], ", %d unreadable lines" % bad[0] if bad[0] else ""))
    w.append("* candidate: `%s`: %d messages%s" % (cand_path, res["n_cand"], ", %d unreadable lines" % bad[1] if bad[1] else ""))
    w.append("* compared (in both): **%d**; only in %s: %d; only in %s: %d"
             % (res["common"], R, len(res["only_ref"]), C, len(res["only_cand"])))
    n = res["common"]
    agree_pct = 100.0 * res["agree"] / n if n else 0.0
    w.append("* **verdict agreement: %d / %d = %s** (target %.0f %%: %s)"
             % (res["agree"], n, pct(res["agree"], n), target, "met" if n and agree_pct >= target else "NOT met"))
    w.append("* identical symbol sets: %d / %d = %s" % (res["same_syms"], n, pct(res["same_syms"], n)))
    w.append("")
    cf = res["conf"]
    w.append("## Confusion matrix (rows %s, columns %s)" % (R, C))
    w.append("")
    w.append("| %s \\ %s | spam | ham |" % (R, C))
    w.append("|---|---|---|")
    w.append("| spam | %d | %d |" % (cf[(True, True)], cf[(True, False)]))
    w.append("| ham | %d | %d |" % (cf[(False, True)], cf[(False, False)]))
    w.append("")
    w.append("## Per folder")
    w.append("")
    w.append("| folder | messages | %s spam | %s spam | agree | agreement | Pearson r | mean abs score delta |" % (R, C))
    w.append("|---|---|---|---|---|---|---|---|")
    for folder in sorted(res["per"], key=lambda f: (f.split("/")[0], f.count("/"), f)):
        p = res["per"][folder]
        mad = (sum(abs(x - y) for x, y in zip(p["xs"], p["ys"])) / len(p["xs"])) if p["xs"] else None
        label = ("**%s**" % folder) if "/" not in folder else folder
        w.append("| %s | %d | %d | %d | %d | %s | %s | %s |" % (label, p["n"], p["ref_spam"], p["cand_spam"], p["agree"],
                                                              pct(p["agree"], p["n"]), fnum(pearson(clip(p["xs"]), clip(p["ys"]))),
                                                              fnum(mad, 2)))
    w.append("| **all** | %d | %d | %d | %d | %s | %s | %s |" % (
        n, cf[(True, True)] + cf[(True, False)], cf[(True, True)] + cf[(False, True)], res["agree"], pct(res["agree"], n),
        fnum(pearson(clip(res["xs"]), clip(res["ys"]))),
        fnum(sum(abs(x - y) for x, y in zip(res["xs"], res["ys"])) / len(res["xs"]) if res["xs"] else None, 2)))
    w.append("")
    xs, ys = res["xs"], res["ys"]
    w.append("## Scores")
    w.append("")
    if xs:
        d = [abs(x - y) for x, y in zip(xs, ys)]
        w.append("* messages with both scores: %d" % len(xs))
        w.append("* Pearson r = %s (scores clipped to [%g, %g]; unclipped %s), Spearman rho = %s"
                 % (fnum(pearson(clip(xs), clip(ys)), 4), CLIP[0], CLIP[1], fnum(pearson(xs, ys), 4), fnum(spearman(xs, ys), 4)))
        w.append("* note: spamd prints scores rounded to one decimal, except that a ham whose score would print as 5.0 shows 4.9 (4.994 ->"
                 " 4.9), so deltas up to 0.1 are display noise; the verdict is (rule-score sum rounded to 3 decimals) >= required_score")
        w.append("* mean abs delta %.3f; |delta| <= 0.05: %s; <= 0.5: %s; max %.2f"
                 % (sum(d) / len(d), pct(sum(1 for v in d if v <= 0.05), len(d)), pct(sum(1 for v in d if v <= 0.5), len(d)), max(d)))
        near = sum(1 for x, y in zip(xs, ys) if min(x, y) < 5.0 <= max(x, y) or abs(x - 5.0) < 1.0)
        w.append("* messages within 1 point of 5.0 or straddling it: %d (where small score differences flip verdicts)" % near)
    else:
        w.append("No scores on one side.")
    w.append("")

    def sym_table(title, only, only_dis, fired_self, fired_other):
        w.append("## %s" % title)
        w.append("")
        if not only:
            w.append("None.")
            w.append("")
            return
        w.append("| symbol | files (fired only here) | in disagreeing files | fired here, all files | fired by the other side | score (set 0) |")
        w.append("|---|---|---|---|---|---|")
        for s, c in sorted(only.items(), key=lambda kv: (-kv[1], kv[0]))[:top]:
            sc = "" if scores is None else fnum(scores.get(s), 3) if s in scores else "?"
            w.append("| %s | %d | %d | %d | %d | %s |" % (s, c, only_dis.get(s, 0), fired_self.get(s, 0), fired_other.get(s, 0), sc))
        if len(only) > top:
            w.append("")
            w.append("(%d more symbols)" % (len(only) - top))
        w.append("")

    sym_table("Symbols %s fires that %s does not (top %d)" % (R, C, top), res["ref_only_sym"], res["ref_only_dis"],
              res["ref_fired"], res["cand_fired"])
    sym_table("Symbols %s fires that %s does not (top %d)" % (C, R, top), res["cand_only_sym"], res["cand_only_dis"],
              res["cand_fired"], res["ref_fired"])

    w.append("## Disagreement classes")
    w.append("")
    nd = n - res["agree"]
    if not nd:
        w.append("No disagreements.")
        w.append("")
    else:
        w.append("%d disagreeing files in %d classes. Key: `-SYM` = only %s fired it, `+SYM` = only %s did%s; "
                 "`(same scoring symbols)` = the difference is in the scores, not the rule hits."
                 % (nd, len(res["classes"]), R, C, ", 0-point symbols left out" if scores is not None else ""))
        w.append("")
        w.append("| # | files | direction (%s->%s) | symbol difference | points (set 0) | example |" % (R, C))
        w.append("|---|---|---|---|---|---|")
        for i, c in enumerate(res["classes"], 1):
            key = " ".join("`%s`" % k for k in c["key"]) or "(same scoring symbols)"
            dirs = ", ".join("%s %d" % kv for kv in sorted(c["dirs"].items()))
            w.append("| %d | %d | %s | %s | %s | `%s` |" % (i, len(c["items"]), dirs, key,
                                                         "" if c["worth"] is None else "%+.3f" % c["worth"],
                                                         c["items"][0][0]))
        w.append("")
        w.append("### Disagreeing files")
        w.append("")
        w.append("| file | %s | %s | class | only %s | only %s |" % (R, C, R, C))
        w.append("|---|---|---|---|---|---|")
        shown = 0
        for i, c in enumerate(res["classes"], 1):
            for name, a, b in c["items"]:
                if shown >= max_files:
                    break
                shown += 1
                ro = sorted(set(a["symbols"]) - set(b["symbols"]))
                co = sorted(set(b["symbols"]) - set(a["symbols"]))
                w.append("| `%s` | %s %s | %s %s | %d | %s | %s |" % (
                    name, "spam" if a["is_spam"] else "ham", fnum(a.get("score"), 1),
                    "spam" if b["is_spam"] else "ham", fnum(b.get("score"), 1), i, " ".join(ro), " ".join(co)))
        if nd > shown:
            w.append("")
            w.append("(%d more; raise --max-files)" % (nd - shown))
        w.append("")
    for label, lst in (("Only in %s" % R, res["only_ref"]), ("Only in %s" % C, res["only_cand"])):
        if lst:
            w.append("## %s (%d)" % (label, len(lst)))
            w.append("")
            for x in lst[:50]:
                w.append("* `%s`" % x)
            if len(lst) > 50:
                w.append("* ... %d more" % (len(lst) - 50))
            w.append("")
    return "\n".join(w), agree_pct


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("reference")
    ap.add_argument("candidate")
    ap.add_argument("--ref-name", default="spamd")
    ap.add_argument("--cand-name", default="mailborder")
    ap.add_argument("--rules", help="SpamAssassin rules dir, for rule scores (score set 0)")
    ap.add_argument("--root", default="/work/shared/corpus",
                    help="absolute corpus root stripped from file names on both sides (default /work/shared/corpus)")
    ap.add_argument("--cand-prefix", default="", help="prepended to candidate file names (relative to --root)")
    ap.add_argument("--depth", type=int, default=2, help="path components that name a folder (default 2)")
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--max-files", type=int, default=200, help="disagreeing files listed (default 200)")
    ap.add_argument("--target", type=float, default=99.0, help="agreement target in %% (default 99)")
    ap.add_argument("--fail-under", type=float, help="exit 1 if overall agreement %% is below this")
    ap.add_argument("--out", help="write the Markdown here instead of stdout")
    a = ap.parse_args(argv)
    ref, bad_r = load_jsonl(a.reference, a.root)
    cand, bad_c = load_jsonl(a.candidate, a.root, a.cand_prefix)
    scores = load_sa_scores(a.rules) if a.rules else None
    res = analyse(ref, cand, depth=max(1, a.depth), scores=scores)
    md, agree = report(res, a.ref_name, a.cand_name, a.reference, a.candidate, top=a.top, scores=scores,
                       max_files=a.max_files, bad=(bad_r, bad_c), target=a.target)
    if a.out:
        with open(a.out, "w") as f:
            f.write(md + "\n")
    else:
        sys.stdout.write(md + "\n")
    if a.fail_under is not None and (res["common"] == 0 or agree < a.fail_under):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
