# mclust's bootstrap of Old Faithful's VVV mixture with 3 components, and its bootstrap
# likelihood-ratio test for the number of components, for tests/test_bootstrap.py.
#   Rscript tests/data/mclust/make_bootstrap.R   (from the repository root)
# Writes bootstrap.csv, one row per (what, index, value):
#   fit_pro, fit_mean (D x G, column-major), fit_variance (D x D x G), fit_loglik: the fit
#   (EM to 1e-10 from mclust's hierarchical start), from which jaxem's refits start too;
#   se_<type>_pro / _mean / _variance: summary(MclustBootstrap(type), what = "se"), 999
#   replicates, for the nonparametric ("bs"), weighted likelihood ("wlbs"), parametric ("pb")
#   and jackknife ("jk") bootstraps;
#   lrt_obs, lrt_p: mclustBootstrapLRT(faithful, "VVV", maxG = 3, nboot = 999), G vs G + 1;
#   lrt_loglik: the fits' log-likelihoods, G = 1..4;
#   seconds_<type>, seconds_lrt: elapsed times on this machine.
suppressMessages(library(mclust))
X <- as.matrix(datasets::faithful)
control <- emControl(tol = c(1e-10, 1e-10))
rows <- list()
add <- function(what, values) {
  rows[[length(rows) + 1]] <<- data.frame(
    what = what, index = seq_along(values) - 1, value = as.numeric(values)
  )
}
mod <- Mclust(X, G = 3, modelNames = "VVV", control = control, verbose = FALSE)
add("fit_pro", mod$parameters$pro)
add("fit_mean", mod$parameters$mean)
add("fit_variance", mod$parameters$variance$sigma)
add("fit_loglik", mod$loglik)
set.seed(1)
for (type in c("bs", "wlbs", "pb", "jk")) {
  seconds <- system.time(boot <- MclustBootstrap(mod, nboot = 999, type = type, verbose = FALSE))
  se <- summary(boot, what = "se")
  add(paste0("se_", type, "_pro"), se$pro)
  add(paste0("se_", type, "_mean"), se$mean)
  add(paste0("se_", type, "_variance"), se$variance)
  add(paste0("seconds_", type), seconds[["elapsed"]])
}
seconds <- system.time(
  lrt <- mclustBootstrapLRT(X, modelName = "VVV", maxG = 3, nboot = 999, control = control,
                            verbose = FALSE)
)
add("lrt_obs", lrt$obs)
add("lrt_p", lrt$p.value)
add("seconds_lrt", seconds[["elapsed"]])
bic <- mclustBIC(X, G = 1:4, modelNames = "VVV", control = control, verbose = FALSE)
add("lrt_loglik", sapply(1:4, function(g) summary(bic, X, G = g, modelNames = "VVV")$loglik))
write.csv(do.call(rbind, rows), "tests/data/mclust/bootstrap.csv", row.names = FALSE)
cat(sprintf("mclust %s\n", packageVersion("mclust")))
print(lrt)
print(summary(MclustBootstrap(mod, nboot = 99, verbose = FALSE), what = "se"))
