# Reference BIC tables of all fourteen covariance models for tests/test_mclust_select.py,
# made by R's mclust (6.0.0):   Rscript tests/data/mclust/make_select.R   (from the repository root)
# mclustBIC(X, G = 1:9), Mclust's default grid, on faithful, iris, diabetes and banknote (the
# data sets' CSVs are those make_reference.R writes), without a prior (all fourteen models) and
# with priorControl() (the ten models mclust fits with a prior). One row per
# (data set, prior, model, G): mclust's BIC (higher is better; NA where mclust finds the fit
# singular or has no prior for the model). Also print_<data set>.txt: how R prints the table
# without a prior (SelectResult.mclust() must print the same).
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
write.csv(do.call(rbind, rows), file.path(out, "select.csv"), row.names = FALSE)
