"""Uplift on Hillstrom (visit): our learners against scikit-uplift's, and the policy against random
targeting, on the same five random 50/50 splits, measured in one run.

    nice .venv/bin/python benchmarks/uplift.py [--splits 5] [--json benchmarks/results/uplift.json]
    .venv/bin/python benchmarks/uplift.py --ceiling [--json benchmarks/results/uplift_ceiling.json]
    nice .venv/bin/python benchmarks/uplift.py --segments mens,womens \
        [--json benchmarks/results/uplift_segments.json]

1. **Qini, Womens E-Mail vs No E-Mail** (the Mens rows dropped, as in scikit-uplift's tutorial):
   per split (stratified by arm and outcome, seeds 0..4), ``retention.strategies.evaluate_uplift``
   fits S-, T-, X-learners and the transformed outcome on the training half and picks one on a
   validation part of it; scikit-uplift 0.5.1's SoloModel (S), TwoModels (T) and
   ClassTransformation, each with LightGBM's defaults, fit on the same training half with the same
   encoded covariates (and again on one-hot columns, as in scikit-uplift's tutorial; its best is
   the best of both). Every model's normalised Qini AUUC and uplift@30% on the held-out half
   (the same function for both libraries; it equals scikit-uplift's ``qini_auc_score``, which a
   check below confirms). Target: our best model's Qini >= scikit-uplift's best learner's (mean
   over the splits), reported for our validation-chosen model (per split) and for our best
   single learner (scikit-uplift's best learner is picked on the held-out half, in its favour).
2. **Policy at 30% treated**, three arms (Mens, Womens, No E-Mail) and the pair: per split,
   with three arms ``evaluate_uplift`` chooses the targeting rule by cross-fitting on the
   training half only (every learner of ``UPLIFT_LEARNERS`` and their mean; raw or calibrated per
   e-mail; each customer's difference between the e-mails shrunk by 0, half or all the way toward
   the average difference; the rule of largest doubly robust value on the left-out folds). The
   same cross-fitted scores also make the choice of ``nested_values=True`` (lines "values
   nested"): every rule valued nested (what it learns from units, its calibration lines and
   average effects, fitted on the other folds for each fold's units), and a stack of all the
   learners tried too (non-negative weights per e-mail fitted to the doubly robust
   pseudo-outcomes; recorded as ``stack|...|nested``), with and without the stack. With
   one e-mail its default is the validation-Qini model's ranking (the cross-fitted choice is run
   and reported beside it). The rule treats 30% of the held-out half with its best e-mail,
   ranked by that e-mail's uplift.
   Valued by IPW and doubly robust estimation on the held-out half with a paired bootstrap,
   against random targeting of as many customers defined three ways (``BASELINES``): with the
   policy's own mix of e-mails (the definition of the first run, unchanged), with the best single
   e-mail, with an e-mail drawn uniformly. Every rule tried is measured on the held-out half too
   (for the record: none is chosen there), and so is the first run's policy (the model chosen by
   validation Qini, raw scores). With three arms, the same search runs again with more
   regularised learners (``REGULARISED``), and a last line chooses among both configurations'
   rules by their cross-fitted value. Target: at least 1.3x the incremental visits of random
   targeting.

3. **Ceiling** (``--ceiling``, its own JSON, seconds): customers grouped by two or three
   pre-treatment columns, each group's effect of each e-mail measured in-sample on all customers,
   the best groups treated up to 30% with their best e-mail: an optimistic reference for how far
   the three-arm ratios can go on Hillstrom, not a policy. Beside it
   (``segment_rules_out_of_sample``) the same groups with their effects measured on each
   split's training half and valued on its held-out half, as the policies of part 2 are: the
   simplest rule, a baseline for the learners' rules (its columns are chosen by hand).
4. **Segments the user names** (``--segments COL,COL``, its own JSON): part 2's three-arm
   policy, the same splits and rule search with the segments learner among the candidates
   (each segment's effects measured on the training units, as ``retention uplift evaluate
   --segments`` does). Which columns to name is the user's knowledge, not learnt here.

scikit-uplift is a benchmark-only reference (in the ``bench`` extra). Its models and metrics
need no matplotlib, so it can sit beside the project's environment without touching it::

    .venv/bin/pip install --target /tmp/sklift --no-deps scikit-uplift==0.5.1
    PYTHONPATH=/tmp/sklift nice .venv/bin/python benchmarks/uplift.py

Without it the first part reports our models only.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import retention.data
from retention.exceptions import RetentionWarning
from retention.strategies import (
    POLICY_FOLDS,
    STACK,
    UPLIFT_LEARNERS,
    FeatureEncoder,
    check_uplift_frame,
    choose_features,
    choose_policy_rule,
    design_propensity,
    evaluate_policies,
    evaluate_uplift,
    one_hot_policy,
    qini_auc_score,
    stratified_split,
    target_policy,
    uplift_at_k,
)

FILES = Path(retention.data.__file__).parent / "files"
COVARIATES = [
    "recency",
    "history_segment",
    "history",
    "mens",
    "womens",
    "zip_code",
    "newbie",
    "channel",
]


def hillstrom(pair: bool) -> pd.DataFrame:
    df = pd.read_csv(FILES / "hillstrom.csv.gz", dtype={"zip_code": str, "channel": str})
    return df[df["segment"] != "Mens E-Mail"].reset_index(drop=True) if pair else df


def one_hot(frame: pd.DataFrame) -> pd.DataFrame:
    """Text columns as 0/1 columns, named c0, c1, ... (LightGBM refuses some characters)."""
    out = pd.get_dummies(frame, dtype=float).reset_index(drop=True)
    out.columns = [f"c{i}" for i in range(out.shape[1])]
    return out


def sklift_models() -> dict[str, object] | None:
    try:
        import lightgbm as lgb
        from sklift.models import ClassTransformation, SoloModel, TwoModels
    except ImportError:
        return None

    def clf() -> object:
        return lgb.LGBMClassifier(verbose=-1, random_state=0, n_jobs=1)

    return {
        "sklift_solo (S)": lambda: SoloModel(clf()),
        "sklift_two_models (T)": lambda: TwoModels(clf(), clf(), method="vanilla"),
        "sklift_class_transformation": lambda: ClassTransformation(clf()),
    }


def qini_part(splits: int, n_boot: int) -> dict[str, object]:
    df = hillstrom(pair=True)
    data = check_uplift_frame(df, treatment="segment", control="No E-Mail", outcome="visit")
    features, _ = choose_features(data, COVARIATES)
    refs = sklift_models()
    rows = []
    checked = False
    for seed in range(splits):
        t0 = time.perf_counter()
        # the Qini figures need no targeting rule: no cross-fitting (policy_folds=0)
        ev = evaluate_uplift(data, features, n_boot=n_boot, random_state=seed, policy_folds=0)
        ours = ev.metrics.xs("Womens E-Mail", level=1)
        row: dict[str, object] = {"split": seed, "chosen": ev.chosen, "seconds_ours": 0.0}
        for m, r in ours.iterrows():
            row[f"qini:{m}"] = float(r["qini"])
            row[f"uplift_at_30:{m}"] = float(r["uplift_at_30"])
        row["seconds_ours"] = time.perf_counter() - t0
        if refs is not None:
            test = stratified_split(data.codes, data.y, 0.5, seed)  # the split evaluate_uplift used
            enc = FeatureEncoder(features).fit(data.frame.loc[~test])
            encodings = {
                # our encoding (LightGBM categories), and one-hot columns as in scikit-uplift's
                # tutorial: scikit-uplift's best is the best of both
                "": enc.transform(data.frame).reset_index(drop=True),
                ", one-hot": one_hot(data.frame[features]),
            }
            t, y = data.codes, data.y
            t1 = time.perf_counter()
            for suffix, X in encodings.items():
                for name, make in refs.items():
                    model = make()
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        model.fit(X.loc[~test], y[~test], t[~test])
                        u = np.asarray(model.predict(X.loc[test]), dtype=float)
                    key = name + suffix
                    row[f"qini:{key}"] = qini_auc_score(y[test], u, t[test])
                    row[f"uplift_at_30:{key}"] = uplift_at_k(y[test], u, t[test], 0.3)
                    if not checked:
                        from sklift.metrics import qini_auc_score as sk_qini

                        assert abs(sk_qini(y[test], u, t[test]) - row[f"qini:{key}"]) < 1e-9
                        checked = True
            row["seconds_sklift"] = time.perf_counter() - t1
        rows.append(row)
        print(f"split {seed}: chosen {ev.chosen}, {row['seconds_ours']:.1f}s", flush=True)
    table = pd.DataFrame(rows).set_index("split")
    qini = table[[c for c in table.columns if c.startswith("qini:")]]
    qini.columns = [c.removeprefix("qini:") for c in qini.columns]
    ours_cols = [c for c in qini.columns if not c.startswith("sklift")]
    sk_cols = [c for c in qini.columns if c.startswith("sklift")]
    chosen_qini = np.array([qini.loc[s, table.loc[s, "chosen"]] for s in table.index])
    out: dict[str, object] = {
        "protocol": "Hillstrom, Womens E-Mail vs No E-Mail, outcome visit, stratified 50/50 "
        f"splits seeds 0..{splits - 1}; normalised Qini AUUC on the held-out half",
        "per_split": json.loads(table.to_json(orient="index")),
        "mean_qini": {c: float(qini[c].mean()) for c in qini.columns},
        "mean_uplift_at_30": {
            c.removeprefix("uplift_at_30:"): float(table[c].mean())
            for c in table.columns
            if c.startswith("uplift_at_30:")
        },
        "ours_chosen_mean_qini": float(chosen_qini.mean()),
        "ours_best_single_model_mean_qini": float(qini[ours_cols].mean().max()),
    }
    if sk_cols:
        sk_best = float(qini[sk_cols].mean().max())
        out["sklift_best"] = str(qini[sk_cols].mean().idxmax())
        out["sklift_best_mean_qini"] = sk_best
        out["ratio_chosen_vs_sklift_best"] = float(chosen_qini.mean() / sk_best)
        out["ratio_best_vs_sklift_best"] = float(qini[ours_cols].mean().max() / sk_best)
        out["target_met (ours >= sklift best)"] = bool(chosen_qini.mean() >= sk_best)
    else:
        out["sklift"] = "not installed: pip install scikit-uplift (the bench extra)"
    return out


#: random targeting at the same budget, three ways (they coincide with one treatment)
BASELINES = {
    "same_mix": "random customers, each given an e-mail drawn from the policy's own mix of "
    "e-mails (the definition of the first run, kept unchanged; the policy's `ratio` column)",
    "best_single": "random customers, each given the best single e-mail on average (chosen on "
    "the training half)",
    "uniform": "random customers, each given an e-mail drawn uniformly",
}


def _variant_row(
    y: np.ndarray,
    arm: np.ndarray,
    e: np.ndarray,
    mu: np.ndarray,
    choice: np.ndarray,
    best: int,
    n_boot: int,
    seed: int,
) -> dict[str, float]:
    """One policy on the held-out half against the three random baselines, IPW and DR, with
    paired bootstrap intervals (the same resamples for every policy of the split)."""
    n, k = e.shape
    pi = one_hot_policy(choice, k)
    mix = pi.mean(axis=0)
    reach = 1 - mix[0]
    single = np.zeros(k)
    single[0], single[best] = 1 - reach, reach
    policies = {
        "p": pi,
        "same_mix": np.tile(mix, (n, 1)),
        "best_single": np.tile(single, (n, 1)),
        "uniform": np.tile(np.r_[1 - reach, np.full(k - 1, reach / (k - 1))], (n, 1)),
    }
    t = evaluate_policies(
        y,
        arm,
        e,
        policies,
        mu=mu,
        reference="same_mix",
        other_references=("best_single", "uniform"),
        n_boot=n_boot,
        random_state=seed,
    ).table
    row: dict[str, float] = {"treated_share": float(reach)}
    for est in ("ipw", "dr"):
        r = t.loc[("p", est)]
        row[f"{est}_per_1000"] = float(r["per_1000"])
        for base, col in (
            ("same_mix", "ratio"),
            ("best_single", "ratio_vs_best_single"),
            ("uniform", "ratio_vs_uniform"),
        ):
            row[f"{est}_ratio_{base}"] = float(r[col])
            row[f"{est}_ratio_{base}_low"] = float(r[f"{col}_low"])
            row[f"{est}_ratio_{base}_high"] = float(r[f"{col}_high"])
    row["e_mail_mix"] = [float(v) for v in mix[1:]]  # type: ignore[assignment]
    return row


def _summary(rows: list[dict[str, object]]) -> dict[str, object]:
    keys = [k for k, v in rows[0].items() if isinstance(v, float)]
    out: dict[str, object] = {k: float(np.mean([float(r[k]) for r in rows])) for k in keys}  # type: ignore[arg-type]
    for base in BASELINES:
        out[f"splits_ipw_{base}_low_above_1"] = int(
            sum(float(r[f"ipw_ratio_{base}_low"]) > 1 for r in rows)  # type: ignore[arg-type]
        )
    return out


#: a second configuration of every learner, more regularised (set before any run, not tuned):
#: its rules join the search in the benchmark's "both configurations" line (three arms only)
REGULARISED = {"num_leaves": 7, "min_child_samples": 400}


def policy_part(splits: int, n_boot: int) -> dict[str, object]:
    out: dict[str, object] = {"baselines": BASELINES, "regularised_params": REGULARISED}
    for label, pair in (("three_arms", False), ("womens_vs_none", True)):
        data = check_uplift_frame(
            hillstrom(pair), treatment="segment", control="No E-Mail", outcome="visit"
        )
        features, _ = choose_features(data, COVARIATES)
        e_all = design_propensity(data.codes, len(data.arms))
        configs = {"": {}} if pair else {"": {}, "|regularised": REGULARISED}
        per_split: dict[str, object] = {}
        variants: dict[str, list[dict[str, object]]] = {}
        headline: list[dict[str, object]] = []
        cross: list[dict[str, object]] = []
        both: list[dict[str, object]] = []
        previous: list[dict[str, object]] = []
        unstacked: list[dict[str, object]] = []
        nested: list[dict[str, object]] = []
        for seed in range(splits):
            t0 = time.perf_counter()
            # every configuration cross-fitted, for the record of every rule
            evs = {
                suffix: evaluate_uplift(
                    data,
                    features,
                    policy_models=tuple(UPLIFT_LEARNERS),
                    policy_folds=POLICY_FOLDS,
                    model_params=params,
                    share=0.3,
                    n_boot=n_boot,
                    random_state=seed,
                )
                for suffix, params in configs.items()
            }
            # the headline is the library's default: the cross-fitted rule with two e-mails to
            # choose from, the validation-Qini model's own ranking with one (no cross-fitting)
            ev = evs[""]
            if pair:
                ev = evaluate_uplift(
                    data,
                    features,
                    policy_models=tuple(UPLIFT_LEARNERS),
                    share=0.3,
                    n_boot=n_boot,
                    random_state=seed,
                )
            test = ev.held_out["test"]
            # every policy valued with the same outcome model (the default run's) for DR
            y, arm, e, mu = data.y[test], data.codes[test], e_all[test], ev.held_out["mu"]
            best = data.treatments.index(ev.settings["best_single_treatment"]) + 1
            rows: dict[str, dict[str, object]] = {}
            values: dict[str, float] = {}
            for suffix, run in evs.items():
                for rule in run.rule_search:  # every rule tried, measured on the held-out half
                    scores = rule.adjust(rule.scores(run.held_out["uplift"]))
                    row: dict[str, object] = {
                        **_variant_row(
                            y, arm, e, mu, target_policy(scores, 0.3), best, n_boot, seed
                        ),
                        "cross_fitted_value_per_1000": 1000 * rule.value,
                    }
                    rows[rule.label + suffix] = row
                    values[rule.label + suffix] = rule.value
                    variants.setdefault(rule.label + suffix, []).append(row)
            assert ev.rule is not None
            if ev.rule.label not in rows:  # a rule outside the search (a learner not in it)
                scores = ev.rule.adjust(ev.rule.scores(ev.held_out["uplift"]))
                rows[ev.rule.label] = _variant_row(
                    y, arm, e, mu, target_policy(scores, 0.3), best, n_boot, seed
                )
            chosen_rule = rows[ev.rule.label]
            cross_fitted = evs[""].rule
            assert cross_fitted is not None
            # the policy row of evaluate_uplift is this same rule: the two must agree
            lib = ev.policy.table.loc[("policy", "ipw")]
            assert abs(float(lib["ratio"]) - float(chosen_rule["ipw_ratio_same_mix"])) < 1e-9
            best_of_both = max(values, key=lambda k: values[k])
            # the same scores, every rule valued nested (calibration, stack weights and average
            # effects fitted on the other folds for each fold's units) and the stack tried too
            # (nested_values=True): the fitted rules are the same as the default's, only their
            # values (and so the choice) differ; the stacks are new rules, recorded as tried
            choice = evs[""].held_out["choice"]
            nested_label = no_stack = None
            if choice:
                train = ~test
                nested_rule, nested_tried = choose_policy_rule(
                    choice["oof"],
                    data.y[train],
                    data.codes[train],
                    e_all[train],
                    choice["mu"],
                    0.3,
                    folds=choice["folds"],
                    nested=True,
                )
                for rule in nested_tried:
                    key = rule.label + "|nested"
                    scores = rule.adjust(rule.scores(evs[""].held_out["uplift"]))
                    row = {
                        **(
                            rows[rule.label]
                            if rule.label in rows
                            else _variant_row(
                                y, arm, e, mu, target_policy(scores, 0.3), best, n_boot, seed
                            )
                        ),
                        "cross_fitted_value_per_1000": 1000 * rule.value,
                    }
                    rows[key] = row
                    variants.setdefault(key, []).append(row)
                nested_label = nested_rule.label + "|nested"
                plain = [r for r in nested_tried if r.model != STACK]
                no_stack = max(plain, key=lambda r: r.value).label + "|nested"
                nested.append({**rows[nested_label], "rule": nested_label})
                unstacked.append({**rows[no_stack], "rule": no_stack})
            # the first run's headline: the model chosen by validation Qini, its raw scores
            old = _variant_row(
                y,
                arm,
                e,
                mu,
                target_policy(ev.held_out["uplift"][ev.chosen], 0.3),
                best,
                n_boot,
                seed,
            )
            headline.append({**chosen_rule, "rule": ev.rule.label})
            cross.append({**rows[cross_fitted.label], "rule": cross_fitted.label})
            both.append({**rows[best_of_both], "rule": best_of_both})
            previous.append({**old, "model": ev.chosen})
            per_split[str(seed)] = {
                "policy_rule": ev.rule.label,
                "policy": chosen_rule,
                "rule_chosen_by_cross_fitting": cross_fitted.label,
                "rule_chosen_by_cross_fitting_policy": rows[cross_fitted.label],
                "rule_chosen_among_both_configurations": best_of_both,
                "rule_chosen_with_nested_values": nested_label,
                "rule_chosen_with_nested_values_without_the_stack": no_stack,
                "qini_chosen_model": ev.chosen,
                "qini_chosen_model_raw_policy": old,
                "seconds": time.perf_counter() - t0,
            }
            print(
                f"{label} split {seed}: policy {ev.rule.label}: "
                f"x{chosen_rule['ipw_ratio_same_mix']:.3f} same mix, "
                f"x{chosen_rule['ipw_ratio_best_single']:.3f} best single, "
                f"x{chosen_rule['ipw_ratio_uniform']:.3f} uniform (IPW); "
                f"{time.perf_counter() - t0:.0f}s",
                flush=True,
            )
        summary = _summary(headline)
        out[label] = {
            "policy (the library's default rule)": summary,
            "rule chosen per split by cross-fitting on the training half": _summary(cross),
            "previous policy (validation-Qini model, raw scores)": _summary(previous),
            **(
                {
                    "rule chosen by cross-fitting, values nested, stack tried": _summary(nested),
                    "rule chosen by cross-fitting, values nested, no stack": _summary(unstacked),
                }
                if nested
                else {}
            ),
            "policy_rules": [r["rule"] for r in headline],
            "target_met (mean IPW ratio >= 1.3)": {
                base: bool(float(summary[f"ipw_ratio_{base}"]) >= 1.3)  # type: ignore[arg-type]
                for base in BASELINES
            },
            "every_rule_tried (mean over splits, held-out half)": {
                name: _summary(rows) for name, rows in variants.items()
            },
            "per_split": per_split,
        }
        if len(configs) > 1:
            entry = out[label]
            assert isinstance(entry, dict)
            entry["policy, rule chosen among both configurations by cross-fitting"] = _summary(both)
    return out


def ceiling(share: float = 0.3) -> dict[str, object]:
    """How much a perfect ranking by coarse segments could reach, in-sample (an optimistic
    reference, not a policy: the segments' effects are measured on the very units they rank).

    Customers are grouped by a few pre-treatment columns; each group's effect of each e-mail is
    its difference in visit rates on all 64,000 customers; the groups of largest best-e-mail effect
    are treated, with that e-mail, until ``share`` of customers (the last group in part).
    """
    df = hillstrom(pair=False)
    df["history_quartile"] = pd.qcut(df["history"], 4, labels=False)
    out: dict[str, object] = {
        "note": "in-sample, all customers: an optimistic reference for the three-arm ratios"
    }
    ate = df.groupby("segment")["visit"].mean()
    ate_m, ate_w = ate["Mens E-Mail"] - ate["No E-Mail"], ate["Womens E-Mail"] - ate["No E-Mail"]
    for cols in (
        ["mens", "womens"],
        ["mens", "womens", "newbie"],
        ["mens", "womens", "history_quartile"],
    ):
        g = df.groupby([*cols, "segment"])["visit"].agg(["mean", "size"]).unstack()
        m, size = g["mean"], g["size"].sum(axis=1) / len(df)
        um, uw = m["Mens E-Mail"] - m["No E-Mail"], m["Womens E-Mail"] - m["No E-Mail"]
        best = np.maximum(um, uw).sort_values(ascending=False)
        left, value, mens = share, 0.0, 0.0
        for cell, effect in best.items():
            take = min(left, float(size[cell]))
            value += take * float(effect)
            mens += take * float(um[cell] >= uw[cell])
            left -= take
            if left <= 1e-12:
                break
        per_treated = value / share
        mix_m = mens / share
        out[" x ".join(cols)] = {
            "cells": len(best),
            "visits_per_treated": per_treated,
            "ratio_vs_best_single": per_treated / max(ate_m, ate_w),
            "ratio_vs_same_mix": per_treated / (mix_m * ate_m + (1 - mix_m) * ate_w),
            "ratio_vs_uniform": per_treated / ((ate_m + ate_w) / 2),
            "mens_share_of_sends": mix_m,
        }
    return out


def segment_rules(splits: int, n_boot: int, share: float = 0.3) -> dict[str, object]:
    """The simplest targeting rule, out of sample: customers grouped by a few pre-treatment
    columns, each group's effect of each e-mail measured on the training half of a split (the
    splits of part 2), the groups ranked by their best e-mail's effect and the held-out half's
    30% treated from the top, valued like the policies of part 2 (IPW, against the same three
    random baselines). A baseline the learners' rules should beat, not a policy of the library:
    the columns are the ceiling's, chosen by hand."""
    df = hillstrom(pair=False)
    df["history_quartile"] = pd.qcut(df["history"], 4, labels=False)
    data = check_uplift_frame(df, treatment="segment", control="No E-Mail", outcome="visit")
    e_all = design_propensity(data.codes, len(data.arms))
    k = len(data.arms)
    out: dict[str, object] = {
        "note": "cells' effects fitted on each split's training half, valued on its held-out half"
    }
    for cols in (
        ["mens", "womens"],
        ["mens", "womens", "newbie"],
        ["mens", "womens", "history_quartile"],
    ):
        key = df[cols].astype(str).agg("|".join, axis=1).to_numpy()
        rows: list[dict[str, object]] = []
        for seed in range(splits):
            test = stratified_split(data.codes, data.y, 0.5, seed)
            train = ~test
            effect = np.zeros((len(df), k - 1))
            for cell in np.unique(key):
                rows_in = train & (key == cell)
                base = data.y[rows_in & (data.codes == 0)].mean()
                for a in range(1, k):
                    effect[key == cell, a - 1] = data.y[rows_in & (data.codes == a)].mean() - base
            ate = [
                data.y[train & (data.codes == a)].mean() - data.y[train & (data.codes == 0)].mean()
                for a in range(1, k)
            ]
            best = int(np.argmax(ate)) + 1
            choice = target_policy(effect[test], share)
            row = _variant_row(
                data.y[test],
                data.codes[test],
                e_all[test],
                np.zeros_like(e_all[test]),  # no outcome model: the DR columns equal the IPW ones
                choice,
                best,
                n_boot,
                seed,
            )
            rows.append({k_: v for k_, v in row.items() if not k_.startswith("dr_")})
        out[" x ".join(cols)] = {**_summary(rows), "per_split": rows}
    return out


def segments_part(segments: list[str], splits: int, n_boot: int) -> dict[str, object]:
    """Part 2's three-arm policy with the user's segments in the rule search
    (``evaluate_uplift(segments=...)``, ``--segments`` of the CLI): the same splits, learners,
    cross-fitted choice and valuation; only the candidates gain the segments learner."""
    data = check_uplift_frame(
        hillstrom(pair=False), treatment="segment", control="No E-Mail", outcome="visit"
    )
    features, _ = choose_features(data, COVARIATES)
    e_all = design_propensity(data.codes, len(data.arms))
    rows: list[dict[str, object]] = []
    for seed in range(splits):
        t0 = time.perf_counter()
        ev = evaluate_uplift(
            data,
            features,
            policy_models=tuple(UPLIFT_LEARNERS),
            policy_folds=POLICY_FOLDS,
            segments=segments,
            share=0.3,
            n_boot=n_boot,
            random_state=seed,
        )
        assert ev.rule is not None
        test = ev.held_out["test"]
        best = data.treatments.index(ev.settings["best_single_treatment"]) + 1
        scores = ev.rule.adjust(ev.rule.scores(ev.held_out["uplift"]))
        row = _variant_row(
            data.y[test],
            data.codes[test],
            e_all[test],
            ev.held_out["mu"],
            target_policy(scores, 0.3),
            best,
            n_boot,
            seed,
        )
        lib = ev.policy.table.loc[("policy", "ipw")]
        assert abs(float(lib["ratio"]) - float(row["ipw_ratio_same_mix"])) < 1e-9
        rows.append({**row, "rule": ev.rule.label, "seconds": time.perf_counter() - t0})
        print(
            f"segments {','.join(segments)} split {seed}: {ev.rule.label}: "
            f"x{row['ipw_ratio_same_mix']:.3f} same mix, x{row['ipw_ratio_best_single']:.3f} "
            f"best single (IPW); {time.perf_counter() - t0:.0f}s",
            flush=True,
        )
    summary = _summary(rows)
    return {
        "segments": segments,
        "policy (rule chosen by cross-fitting, segments among the candidates)": summary,
        "target_met (mean IPW ratio >= 1.3)": {
            base: bool(float(summary[f"ipw_ratio_{base}"]) >= 1.3)  # type: ignore[arg-type]
            for base in BASELINES
        },
        "per_split": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--n-boot", type=int, default=300)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--ceiling",
        action="store_true",
        help="only the in-sample segment ceiling of the three-arm ratios and the segment rules "
        "fitted on the training halves (seconds; its own JSON)",
    )
    parser.add_argument(
        "--segments",
        default=None,
        help="only part 2's three-arm policy with these covariates' segments among the "
        "candidates (e.g. mens,womens; its own JSON)",
    )
    args = parser.parse_args()
    warnings.simplefilter("ignore", RetentionWarning)
    if args.segments:
        text = json.dumps(
            segments_part(args.segments.split(","), args.splits, args.n_boot), indent=2
        )
        print(text)
        if args.json is not None:
            args.json.write_text(text + "\n")
        return
    if args.ceiling:
        result = {
            **ceiling(),
            "segment_rules_out_of_sample": segment_rules(args.splits, args.n_boot),
        }
        text = json.dumps(result, indent=2)
        print(text)
        if args.json is not None:
            args.json.write_text(text + "\n")
        return
    t0 = time.perf_counter()
    result = {
        "qini_vs_scikit_uplift": qini_part(args.splits, args.n_boot),
        "policy_at_30pct": policy_part(args.splits, args.n_boot),
        "seconds": time.perf_counter() - t0,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
