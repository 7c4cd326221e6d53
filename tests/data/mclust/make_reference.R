# Reference BIC tables for tests/test_mclust_reference.py, made by R's mclust.
#   Rscript tests/data/mclust/make_reference.R   (from the repository root)
# Writes every data set as <name>.csv and all tables to bic.csv: one row per
# (data set, prior, model, G) with mclust's BIC (higher is better; NA where mclust
# finds the fit singular). VVV/VVI/VII/EEE are jaxem's full/diag/spherical/tied.
# Also hc.csv: mclust's default hierarchical start (hc with hcModelName "VVV" and
# hcUse "SVD", what mclustBIC starts EM from), cut into G = 1..12 clusters, one row per
# (data set, observation).
suppressMessages(library(mclust))
out <- "tests/data/mclust"
data(diabetes, package = "mclust")
data(thyroid, package = "mclust")
data(banknote, package = "mclust")
sets <- list(
  faithful = datasets::faithful,
  iris = datasets::iris[, 1:4],
  diabetes = diabetes[, -1],
  thyroid = thyroid[, -1],
  banknote = banknote[, -1],
  usarrests = datasets::USArrests
)
models <- c("VVV", "VVI", "VII", "EEE")
rows <- list()
partitions <- list()
timing <- 0
for (name in names(sets)) {
  X <- as.matrix(sets[[name]])
  write.csv(X, file.path(out, paste0(name, ".csv")), row.names = FALSE)
  tree <- hc(X, modelName = mclust.options("hcModelName"), use = mclust.options("hcUse"))
  cl <- hclass(tree, 1:12)
  colnames(cl) <- paste0("G", 1:12)
  partitions[[name]] <- data.frame(dataset = name, row = seq_len(nrow(X)), cl)
  for (with_prior in c(FALSE, TRUE)) {
    t0 <- proc.time()[["elapsed"]]
    b <- if (with_prior) {
      mclustBIC(X, G = 1:6, modelNames = models, prior = priorControl(), verbose = FALSE)
    } else {
      mclustBIC(X, G = 1:6, modelNames = models, verbose = FALSE)
    }
    timing <- timing + proc.time()[["elapsed"]] - t0
    for (m in models) for (g in 1:6) {
      rows[[length(rows) + 1]] <- data.frame(
        dataset = name, prior = if (with_prior) "default" else "none",
        model = m, G = g, bic = b[as.character(g), m]
      )
    }
  }
}
write.csv(do.call(rbind, rows), file.path(out, "bic.csv"), row.names = FALSE)
write.csv(do.call(rbind, partitions), file.path(out, "hc.csv"), row.names = FALSE)
cat(sprintf("mclust %s, %s: %d tables in %.2f s\n", packageVersion("mclust"),
            R.version.string, 2 * length(sets), timing))
