# mclust's EM from a given partition, model by model, for tests/test_covariance_models.py:
# me(modelName, data, z) run for 1, 10 and 100 iterations (emControl tol 0, so that it runs
# them all; the iterative M-steps of VEI, VEE and VEV to 1e-11, at most 10,000 inner passes),
# its parameters and log-likelihood, and nMclustParams. Data: Old Faithful, iris and
# a generated data set with D = 5 (written beside, me5.csv).
#   Rscript tests/data/mclust/make_me.R   (from the repository root)
suppressMessages(library(mclust))
out <- "tests/data/mclust"
set.seed(1)
g <- rep(1:3, c(60, 50, 40))
centres <- rbind(c(0, 0, 0, 0, 0), c(3, 1, -2, 0, 1), c(-1, 4, 1, 2, -2))
gen <- centres[g, ] + matrix(rnorm(150 * 5), 150, 5) %*% diag(c(1, 0.5, 2, 1, 0.7))
write.csv(data.frame(gen), file.path(out, "me5.csv"), row.names = FALSE)
sets <- list(
  faithful = list(X = as.matrix(datasets::faithful), z = ifelse(datasets::faithful[, 2] > 70, 2, 1)),
  iris = list(X = as.matrix(datasets::iris[, 1:4]), z = as.integer(datasets::iris[, 5])),
  me5 = list(X = gen, z = g)
)
models <- c("EII", "VII", "EEI", "VVI", "EVI", "VEI", "EEE", "VEE", "EVE", "VVE", "EEV", "VEV", "EVV", "VVV")
rows <- list()
add <- function(set, model, iters, what, values) {
  rows[[length(rows) + 1]] <<- data.frame(
    dataset = set, model = model, iters = iters, what = what,
    index = seq_along(values) - 1, value = as.numeric(values)
  )
}
for (set in names(sets)) {
  X <- sets[[set]]$X
  add(set, "-", 0, "z", sets[[set]]$z - 1)  # the starting partition, labels from 0
  z <- unmap(sets[[set]]$z)
  for (model in models) {
    for (iters in c(1, 10, 100)) {
      fit <- me(X, modelName = model, z = z,
                control = emControl(itmax = c(iters, 10000), tol = c(0, 1e-11)))
      p <- fit$parameters
      add(set, model, iters, "pro", p$pro)
      add(set, model, iters, "mean", p$mean)  # (D, G) in R = (G, D) row-major
      add(set, model, iters, "sigma", p$variance$sigma)  # (D, D, G) in R = (G, D, D)
      add(set, model, iters, "loglik", fit$loglik)
      add(set, model, iters, "n_params", nMclustParams(model, ncol(X), ncol(z)))
    }
  }
}
# one M-step with mclust's default prior (priorControl()) from the same partition (VEI and VEV:
# their inner loop to mclust's default tolerance, sqrt(eps))
for (set in names(sets)) {
  X <- sets[[set]]$X
  z <- unmap(sets[[set]]$z)
  for (model in c("VII", "EEI", "VVI", "EVI", "VEI", "EEE", "EEV", "VEV", "VVV")) {
    fit <- mstep(X, modelName = model, z = z, prior = priorControl())
    add(set, model, 0, "mean_map", fit$parameters$mean)
    add(set, model, 0, "sigma_map", fit$parameters$variance$sigma)
  }
}
write.csv(do.call(rbind, rows), file.path(out, "me.csv"), row.names = FALSE)
cat(sprintf("mclust %s, %d rows\n", packageVersion("mclust"), sum(sapply(rows, nrow))))
