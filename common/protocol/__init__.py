"""(DP trainer -> secure update) the federation plan, the packed update, SecAgg+ mask expansion, the app identity."""
