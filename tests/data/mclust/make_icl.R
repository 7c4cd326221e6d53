# Reference ICL tables of all fourteen covariance models for tests/test_mclust_select.py, made
# by R's mclust (6.0.0):   Rscript tests/data/mclust/make_icl.R   (from the repository root)
# mclustICL(X, G = 1:9), Mclust's default grid, on faithful and iris (the CSVs make_reference.R
# writes), no prior. One row per (data set, model, G): mclust's ICL (higher is better; NA where
# mclust finds the fit singular).
suppressMessages(library(mclust))
out <- "tests/data/mclust"
rows <- list()
for (name in c("faithful", "iris")) {
  X <- as.matrix(read.csv(file.path(out, paste0(name, ".csv"))))
  b <- mclustICL(X, G = 1:9, verbose = FALSE)
  for (m in colnames(b)) for (g in 1:9) {
    rows[[length(rows) + 1]] <- data.frame(dataset = name, model = m, G = g, icl = b[as.character(g), m])
  }
}
write.csv(do.call(rbind, rows), file.path(out, "icl.csv"), row.names = FALSE)
