"""(model -> DP trainer) DP-SGD, its accounting and the CSPRNG behind its noise."""
