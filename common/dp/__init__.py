"""(model -> DP trainer) the sampling plan (plan), the step loop (trainer), DP-SGD steps
(dp_sgd), their accounting and the CSPRNG behind the noise and the sampling (rng)."""
