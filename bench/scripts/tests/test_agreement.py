"""Tests for bench/scripts/agreement.py (stdlib only, no network, no corpus data needed).

  python3 -m unittest discover -s bench/scripts/tests -v
  python3 -m unittest bench/scripts/tests/test_agreement.py

The synthetic JSONL is generated here. If a real reference exists (SPAMD_REFERENCE, default
/tmp/spamd-reference.jsonl), it is additionally checked against itself and a perturbed copy.
"""
import contextlib
import io
import json
import os
import random
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import agreement  # noqa: E402

SCORES = {"RULE_HI": 3.0, "RULE_MID": 1.5, "RULE_LO": 0.5, "RULE_NEG": -1.0, "RULE_ZERO": 0.0}


def synth(n=400, seed=3):
    """deterministic fake reference: symbols drawn at random, score = sum of SCORES"""
    rng = random.Random(seed)
    recs = []
    for i in range(n):
        folder = ("ham/x", "spam/y", "mixed/z/deep")[i % 3]
        syms = sorted(s for s in SCORES if rng.random() < 0.4)
        score = round(sum(SCORES[s] for s in syms), 1)
        recs.append({"file": "%s/m%04d" % (folder, i), "score": score, "required": 5.0,
                     "is_spam": score >= 5.0, "symbols": syms, "ms": 10.0})
    return recs


def rescore(r, syms):
    r = dict(r)
    r["symbols"] = sorted(syms)
    r["score"] = round(sum(SCORES.get(s, 1.0) for s in syms), 1)
    r["is_spam"] = r["score"] >= 5.0
    return r


def perturb(recs, drop="RULE_HI", every=5, add="RULE_NEW", add_every=7):
    """copy where every `every`-th message loses `drop` and every `add_every`-th gains `add` (1 point)"""
    out = []
    for i, r in enumerate(recs):
        syms = set(r["symbols"])
        if i % every == 0:
            syms.discard(drop)
        if i % add_every == 0:
            syms.add(add)
        out.append(rescore(r, syms) if syms != set(r["symbols"]) else dict(r))
    return out


class AgreementTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)

    def write(self, name, recs, extra_lines=()):
        p = os.path.join(self.tmp.name, name)
        with open(p, "w") as f:
            for r in recs:
                f.write(json.dumps(r) + "\n")
            for ln in extra_lines:
                f.write(ln + "\n")
        return p

    def run_main(self, *argv):
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            rc = agreement.main(list(argv))
        return rc, buf.getvalue()

    def test_self_is_100_percent(self):
        recs = synth()
        p = self.write("ref.jsonl", recs)
        ref, bad = agreement.load_jsonl(p)
        self.assertEqual(bad, 0)
        res = agreement.analyse(ref, ref)
        self.assertEqual(res["agree"], len(recs))
        self.assertEqual(res["same_syms"], len(recs))
        self.assertEqual(res["classes"], [])
        self.assertAlmostEqual(agreement.pearson(res["xs"], res["ys"]), 1.0)
        rc, md = self.run_main(p, p, "--fail-under", "99")
        self.assertEqual(rc, 0)
        self.assertIn("verdict agreement: %d / %d = 100.00 %%" % (len(recs), len(recs)), md)
        self.assertIn("No disagreements.", md)
        for folder in ("ham/x", "spam/y", "mixed/z"):
            self.assertIn("| %s |" % folder, md)

    def test_perturbed_copy(self):
        recs = synth()
        pert = perturb(recs)
        # expected values computed independently of agreement.py
        exp_agree = sum(a["is_spam"] == b["is_spam"] for a, b in zip(recs, pert))
        exp_dropped = sum(1 for i, r in enumerate(recs) if i % 5 == 0 and "RULE_HI" in r["symbols"])
        exp_added = sum(1 for i, r in enumerate(recs) if i % 7 == 0)
        self.assertLess(exp_agree, len(recs))  # the perturbation must flip something
        pr, pc = self.write("ref.jsonl", recs), self.write("cand.jsonl", pert)
        ref, _ = agreement.load_jsonl(pr)
        cand, _ = agreement.load_jsonl(pc)
        res = agreement.analyse(ref, cand, scores=SCORES)
        self.assertEqual(res["agree"], exp_agree)
        self.assertEqual(res["ref_only_sym"], {"RULE_HI": exp_dropped})
        self.assertEqual(res["cand_only_sym"], {"RULE_NEW": exp_added})
        # every disagreement is explained by one of the two perturbations
        keys = {c["key"] for c in res["classes"]}
        self.assertTrue(keys <= {("-RULE_HI",), ("+RULE_NEW",), ("-RULE_HI", "+RULE_NEW")}, keys)
        self.assertEqual(sum(len(c["items"]) for c in res["classes"]), len(recs) - exp_agree)
        for c in res["classes"]:
            if c["key"] == ("-RULE_HI",):
                self.assertEqual(set(c["dirs"]), {"spam->ham"})
                self.assertAlmostEqual(c["worth"], -3.0)
            if c["key"] == ("+RULE_NEW",):
                self.assertEqual(set(c["dirs"]), {"ham->spam"})
        # per-folder counts add up
        tops = [f for f in res["per"] if "/" not in f]
        self.assertEqual(sum(res["per"][f]["n"] for f in tops), len(recs))
        rc, md = self.run_main(pr, pc, "--fail-under", "99.9", "--target", "99.9")
        self.assertEqual(rc, 1)
        self.assertIn("NOT met", md)
        self.assertIn("| RULE_HI | %d |" % exp_dropped, md)
        self.assertIn("`-RULE_HI`", md)

    def test_zero_point_symbols_do_not_make_classes(self):
        a = {"file": "ham/x/1", "score": 4.9, "is_spam": False, "symbols": ["RULE_ZERO"]}
        b = {"file": "ham/x/1", "score": 5.1, "is_spam": True, "symbols": []}
        res = agreement.analyse({"ham/x/1": a}, {"ham/x/1": b}, scores=SCORES)
        self.assertEqual(res["classes"][0]["key"], ())
        _, md = self.run_main(self.write("a.jsonl", [a]), self.write("b.jsonl", [b]))
        self.assertIn("(same scoring symbols)", md)

    def test_missing_files_bad_lines_duplicates(self):
        recs = synth(30)
        cand = recs[5:] + [dict(recs[6], is_spam=not recs[6]["is_spam"])]  # duplicate: last wins
        cand.append({"file": "extra/only/in/cand", "score": 0, "is_spam": False, "symbols": []})
        pr = self.write("ref.jsonl", recs)
        pc = self.write("cand.jsonl", cand, extra_lines=["not json", '{"no_file": 1}'])
        ref, _ = agreement.load_jsonl(pr)
        c, bad = agreement.load_jsonl(pc)
        self.assertEqual(bad, 2)
        res = agreement.analyse(ref, c)
        self.assertEqual(res["common"], 25)
        self.assertEqual(len(res["only_ref"]), 5)
        self.assertEqual(res["only_cand"], ["extra/only/in/cand"])
        self.assertEqual(res["agree"], 24)

    def test_names_are_normalised(self):
        self.assertEqual(agreement.norm_name("/work/shared/corpus/ham/x/1", "/work/shared/corpus"), "ham/x/1")
        self.assertEqual(agreement.norm_name("./easy_ham/1", None, "ham/spamassassin"), "ham/spamassassin/easy_ham/1")
        self.assertEqual(agreement.norm_name("ham/spamassassin/easy_ham/1", None, "ham/spamassassin/"),
                         "ham/spamassassin/easy_ham/1")
        recs = synth(12)
        cand = [dict(r, file="/corp/" + r["file"]) for r in recs]
        rc, md = self.run_main(self.write("r.jsonl", recs), self.write("c.jsonl", cand), "--root", "/corp")
        self.assertIn("verdict agreement: 12 / 12 = 100.00 %", md)

    def test_stats(self):
        self.assertAlmostEqual(agreement.pearson([1, 2, 3], [2, 4, 6]), 1.0)
        self.assertAlmostEqual(agreement.pearson([1, 2, 3], [3, 2, 1]), -1.0)
        self.assertAlmostEqual(agreement.spearman([1, 2, 3, 4], [1, 4, 9, 100]), 1.0)
        self.assertEqual(agreement.ranks([5, 1, 5]), [2.5, 1.0, 2.5])
        self.assertEqual(agreement.folder_of("a/b/c/d", 2), "a/b")
        self.assertEqual(agreement.folder_of("a/file", 2), "a")

    def test_sa_scores(self):
        d = os.path.join(self.tmp.name, "rules")
        os.mkdir(d)
        with open(os.path.join(d, "10_a.cf"), "w") as f:
            f.write("score R4 1.0 2.0 3.0 4.0\nscore R1 2.5 # comment\nscore R_LATER 1\n")
        with open(os.path.join(d, "50_b.cf"), "w") as f:
            f.write("score R_LATER 0.7 0 0 0\n")
        with open(os.path.join(d, "72_c.cf"), "w") as f:
            f.write("header R_NOSCORE From =~ /x/\nmeta R_NICE R1 && R4\ntflags R_NICE nice publish\n"
                    "body T_TESTING /y/\nbody __SUB /z/\n")
        s = agreement.load_sa_scores(d)
        # SA defaults for rules without a score line: 1.0, -1.0 if nice, 0.01 for T_; none for __ subrules
        self.assertEqual(s, {"R4": 1.0, "R1": 2.5, "R_LATER": 0.7, "R_NOSCORE": 1.0, "R_NICE": -1.0, "T_TESTING": 0.01})


REAL = os.environ.get("SPAMD_REFERENCE", "/tmp/spamd-reference.jsonl")


@unittest.skipUnless(os.path.exists(REAL), "no reference run at %s" % REAL)
class RealReferenceTest(unittest.TestCase):
    def test_real_reference_self_and_perturbed(self):
        ref, bad = agreement.load_jsonl(REAL)
        self.assertEqual(bad, 0)
        res = agreement.analyse(ref, ref)
        self.assertEqual(res["agree"], len(ref))
        # perturbed: drop the most frequent symbol from every 10th spam verdict, flip those within
        # 1 point of the threshold; agreement must drop by exactly the flipped count
        names = sorted(ref)
        top = max(res["ref_fired"].items(), key=lambda kv: kv[1])[0]
        cand, flipped = {}, 0
        for i, n in enumerate(names):
            r = dict(ref[n])
            if i % 10 == 0 and r["is_spam"] and top in r["symbols"]:
                r["symbols"] = [s for s in r["symbols"] if s != top]
                if r["score"] < r.get("required", 5.0) + 1.0:
                    r["is_spam"] = False
                    flipped += 1
            cand[n] = r
        res2 = agreement.analyse(ref, cand)
        self.assertEqual(res2["agree"], len(ref) - flipped)
        if flipped:
            self.assertEqual(res2["classes"][0]["key"], ("-" + top,))


if __name__ == "__main__":
    unittest.main()
