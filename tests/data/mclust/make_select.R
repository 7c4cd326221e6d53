# Reference BIC tables of all fourteen covariance models for tests/test_mclust_select.py,
# made by R's mclust (6.0.0):   Rscript tests/data/mclust/make_select.R   (from the repository root)
# mclustBIC(X, G = 1:9), Mclust's default grid, on faithful, iris, diabetes and banknote (the
# data sets' CSVs are those make_reference.R writes), without a prior (all fourteen models) and
# with priorControl() (the ten models mclust fits with a prior). One row per
# (data set, prior, model, G): mclust's BIC (higher is better; NA where mclust finds the fit
# singular or has no prior for the model). Also print_<data set>.txt: how R prints the table
# without a prior (SelectResult.mclust() must print the same). And "degenerate" (degenerate.csv,
# written here): two Gaussian clusters and four copies of one point, G = 1:5, no prior: where
# mclust finds the fits singular (NA).
suppressMessages(library(mclust))
out <- "tests/data/mclust"
with_prior <- c("EII", "VII", "EEI", "VEI", "EVI", "VVI", "EEE", "EEV", "VEV", "VVV")
rows <- list()
for (name in c("faithful", "iris", "diabetes", "banknote")) {
  X <- as.matrix(read.csv(file.path(out, paste0(name, ".csv"))))
  for (prior in c("none", "default")) {
    b <- if (prior == "none") {
      mclustBIC(X, G = 1:9, verbose = FALSE)
    } else {
      mclustBIC(X, G = 1:9, modelNames = with_prior, prior = priorControl(), verbose = FALSE)
    }
    if (prior == "none") writeLines(capture.output(print(b)), file.path(out, paste0("print_", name, ".txt")))
    for (m in colnames(b)) for (g in 1:9) {
      rows[[length(rows) + 1]] <- data.frame(
        dataset = name, prior = prior, model = m, G = g, bic = b[as.character(g), m]
      )
    }
  }
}
set.seed(0)
X <- rbind(matrix(rnorm(120), 40, 3), matrix(rnorm(120, 5), 40, 3), matrix(c(10, -4, 2), 4, 3, byrow = TRUE))
write.csv(data.frame(a = X[, 1], b = X[, 2], c = X[, 3]), file.path(out, "degenerate.csv"), row.names = FALSE)
b <- mclustBIC(X, G = 1:5, verbose = FALSE)
for (m in colnames(b)) for (g in 1:5) {
  rows[[length(rows) + 1]] <- data.frame(
    dataset = "degenerate", prior = "none", model = m, G = g, bic = b[as.character(g), m]
  )
}
write.csv(do.call(rbind, rows), file.path(out, "select.csv"), row.names = FALSE)
