//! The statistics behind "enough evidence".
//!
//! Verdicts use two anytime-valid sequential tests ([`sequential::RateTest`],
//! [`sequential::ShareTest`]): each is an e-process — a nonnegative supermartingale
//! under its null hypothesis, starting at 1 — so by Ville's inequality
//! P(it ever reaches 1/α) ≤ α, however often and whenever it is looked at.
//! That is what makes "with confidence" hold over a deploy's whole watch
//! (`docs/guarantees.md#verdicts`), where a fixed-sample test recomputed at every evaluation
//! would not.
//!
//! The Wilson bound and the normal quantile remain for reporting (the
//! uncertainty of a Monte Carlo estimate in `simulate`), not for verdicts.

pub mod sequential;

/// The standard normal quantile `z` such that P(Z ≤ z) = `confidence`.
pub fn z_for_confidence(confidence: f64) -> f64 {
    inverse_normal_cdf(confidence.clamp(1e-12, 1.0 - 1e-12))
}

/// Lower bound of the one-sided Wilson score interval for `bad` out of `n`
/// at the normal quantile `z`, with continuity correction (Newcombe 1998,
/// method 4). Zero when `n` or `bad` is zero.
///
/// The plain Wilson bound is anti-conservative when only a handful of bad
/// requests were seen — exactly the low-traffic case where acting on noise
/// is most tempting; the correction matters there and vanishes as counts grow.
pub fn wilson_lower_bound(bad: u64, n: u64, z: f64) -> f64 {
    let bad = bad.min(n);
    if n == 0 || bad == 0 {
        return 0.0;
    }
    let n_f = n as f64;
    let p = bad as f64 / n_f;
    let z2 = z * z;
    let inner = z2 - 2.0 - 1.0 / n_f + 4.0 * p * (n_f * (1.0 - p) + 1.0);
    let num = 2.0 * n_f * p + z2 - 1.0 - z * inner.max(0.0).sqrt();
    (num / (2.0 * (n_f + z2))).clamp(0.0, 1.0)
}

/// The plain Wilson score lower bound (no continuity correction), kept for
/// comparison in tests.
#[cfg(test)]
fn wilson_plain(bad: u64, n: u64, z: f64) -> f64 {
    let n_f = n as f64;
    let p = (bad.min(n) as f64) / n_f;
    let z2 = z * z;
    let denom = 1.0 + z2 / n_f;
    let center = p + z2 / (2.0 * n_f);
    let margin = z * ((p * (1.0 - p) / n_f) + z2 / (4.0 * n_f * n_f)).sqrt();
    ((center - margin) / denom).clamp(0.0, 1.0)
}

/// Wichura's algorithm AS 241 (PPND16), accurate to about 1e-16. The
/// coefficients are the published ones, digit for digit.
#[allow(clippy::excessive_precision, clippy::inconsistent_digit_grouping)]
fn inverse_normal_cdf(p: f64) -> f64 {
    let q = p - 0.5;
    if q.abs() <= 0.425 {
        let r = 0.180625 - q * q;
        return q
            * (((((((2509.080_928_730_122_7 * r + 33430.575_583_588_128) * r
                + 67265.770_927_008_7)
                * r
                + 45921.953_931_549_87)
                * r
                + 13731.693_765_509_461)
                * r
                + 1971.590_950_306_551_3)
                * r
                + 133.141_667_891_784_38)
                * r
                + 3.387_132_872_796_366_5)
            / (((((((5226.495_278_852_545 * r + 28729.085_735_721_943) * r
                + 39307.895_800_092_71)
                * r
                + 21213.794_301_586_597)
                * r
                + 5394.196_021_424_751)
                * r
                + 687.187_007_492_057_9)
                * r
                + 42.313_330_701_600_91)
                * r
                + 1.0);
    }
    let r = if q < 0.0 { p } else { 1.0 - p };
    let r = (-r.ln()).sqrt();
    let val = if r <= 5.0 {
        let r = r - 1.6;
        (((((((7.745_450_142_783_414e-4 * r + 0.022_723_844_989_269_184) * r
            + 0.241_780_725_177_450_6)
            * r
            + 1.270_458_252_452_368_4)
            * r
            + 3.647_848_324_763_204_5)
            * r
            + 5.769_497_221_460_691)
            * r
            + 4.630_337_846_156_546)
            * r
            + 1.423_437_110_749_683_5)
            / (((((((1.050_750_071_644_416_9e-9 * r + 5.475_938_084_995_345e-4) * r
                + 0.015_198_666_563_616_457)
                * r
                + 0.148_103_976_427_480_08)
                * r
                + 0.689_767_334_985_1)
                * r
                + 1.676_384_830_183_803_8)
                * r
                + 2.053_191_626_637_759)
                * r
                + 1.0)
    } else {
        let r = r - 5.0;
        (((((((2.010_334_399_292_288_1e-7 * r + 2.711_555_568_743_487_6e-5) * r
            + 0.001_242_660_947_388_078_4)
            * r
            + 0.026_532_189_526_576_124)
            * r
            + 0.296_560_571_828_504_9)
            * r
            + 1.784_826_539_917_291_3)
            * r
            + 5.463_784_911_164_114)
            * r
            + 6.657_904_643_501_103)
            / (((((((2.044_263_103_389_939_7e-15 * r + 1.421_511_758_316_446e-7) * r
                + 1.846_318_317_510_054_8e-5)
                * r
                + 7.868_691_311_456_133e-4)
                * r
                + 0.014_875_361_290_850_615)
                * r
                + 0.136_929_880_922_735_8)
                * r
                + 0.599_832_206_555_888)
                * r
                + 1.0)
    };
    if q < 0.0 {
        -val
    } else {
        val
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_quantiles() {
        assert!((z_for_confidence(0.95) - 1.644_853_626_951).abs() < 1e-9);
        assert!((z_for_confidence(0.975) - 1.959_963_984_540).abs() < 1e-9);
        assert!((z_for_confidence(0.99) - 2.326_347_874_041).abs() < 1e-9);
        assert!(z_for_confidence(0.5).abs() < 1e-12);
        assert!((z_for_confidence(0.999_999) - 4.753_424_308_822).abs() < 1e-8);
    }

    #[test]
    fn wilson_matches_worked_examples() {
        // 12 bad of 150 at z = 1.645: plain Wilson ≈ 0.0506, corrected ≈ 0.0480.
        let z = z_for_confidence(0.95);
        assert!((wilson_plain(12, 150, z) - 0.0506).abs() < 5e-4);
        let lb = wilson_lower_bound(12, 150, z);
        assert!((lb - 0.0480).abs() < 5e-4, "{lb}");
        // Newcombe (1998), method 4, 15/148 at 95% two-sided: 0.0598.
        let lb = wilson_lower_bound(15, 148, z_for_confidence(0.975));
        assert!((lb - 0.0598).abs() < 2e-4, "{lb}");
        assert_eq!(wilson_lower_bound(0, 0, 1.645), 0.0);
        assert_eq!(wilson_lower_bound(0, 1000, 1.645), 0.0);
        assert_eq!(wilson_lower_bound(5, 0, 1.645), 0.0);
    }

    proptest! {
        #[test]
        fn wilson_is_a_lower_bound_in_unit_range(n in 1u64..1_000_000, frac in 0.0f64..=1.0, conf in 0.5f64..0.9999) {
            let bad = ((n as f64) * frac) as u64;
            let z = z_for_confidence(conf);
            let lb = wilson_lower_bound(bad, n, z);
            prop_assert!((0.0..=1.0).contains(&lb));
            prop_assert!(lb <= bad as f64 / n as f64 + 1e-12);
            // The continuity correction only ever makes the bound more cautious.
            prop_assert!(lb <= wilson_plain(bad, n, z) + 1e-12);
        }

        #[test]
        fn wilson_grows_with_bad_and_with_evidence(n in 2u64..100_000, frac in 0.0f64..1.0) {
            let z = 1.645;
            let bad = ((n as f64) * frac) as u64;
            let lb = wilson_lower_bound(bad, n, z);
            prop_assert!(wilson_lower_bound(bad + 1, n, z) >= lb - 1e-12);
            // Same ratio, ten times the evidence: a tighter (higher) bound.
            prop_assert!(wilson_lower_bound(bad * 10, n * 10, z) >= lb - 1e-12);
        }

        #[test]
        fn wilson_tightens_with_lower_confidence(n in 1u64..100_000, frac in 0.0f64..=1.0, c1 in 0.5f64..0.999, c2 in 0.5f64..0.999) {
            let bad = ((n as f64) * frac) as u64;
            let (lo, hi) = if c1 < c2 { (c1, c2) } else { (c2, c1) };
            prop_assert!(wilson_lower_bound(bad, n, z_for_confidence(lo)) + 1e-12 >= wilson_lower_bound(bad, n, z_for_confidence(hi)));
        }

        #[test]
        fn quantile_is_monotonic_and_inverts_symmetrically(a in 0.0001f64..0.9999, b in 0.0001f64..0.9999) {
            let (lo, hi) = if a < b { (a, b) } else { (b, a) };
            prop_assert!(z_for_confidence(lo) <= z_for_confidence(hi));
            prop_assert!((z_for_confidence(a) + z_for_confidence(1.0 - a)).abs() < 1e-9);
        }
    }
}
