# mclust's EEI (one diagonal covariance shared by all components) BIC on Old Faithful, G = 1..4,
# for tests/test_own_structure.py (a covariance structure written outside jaxem). EM runs to
# convergence (tol 1e-12; at mclust's default 1e-5, G = 3 stops 0.045 BIC units short).
#   Rscript tests/data/mclust/make_eei.R   (from the repository root)
suppressMessages(library(mclust))
X <- as.matrix(datasets::faithful)
control <- emControl(tol = c(1e-12, 1e-12))
b <- mclustBIC(X, G = 1:4, modelNames = "EEI", control = control, verbose = FALSE)
out <- data.frame(G = 1:4, bic = as.numeric(b[, "EEI"]))
write.csv(out, "tests/data/mclust/eei.csv", row.names = FALSE)
cat(sprintf("mclust %s\n", packageVersion("mclust")))
print(out, digits = 10)
