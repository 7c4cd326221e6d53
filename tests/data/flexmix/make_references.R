# References for tests/test_numpyro_model.py: models jaxem has no class for, written in
# NumPyro there and fitted by EM, against R's mixtools and flexmix. Data are drawn here
# (set.seed) and written next to the fitted parameters. Run from the repository root:
#   Rscript tests/data/flexmix/make_references.R
# (Debian: r-cran-mixtools 2.0.0, r-cran-flexmix 2.3-19.)
suppressPackageStartupMessages({
  library(mixtools)
  library(flexmix)
})
out <- "tests/data/flexmix"
set.seed(20261206)

# 1. A mixture of two linear regressions, y = b0_k + b1_k x + e, e ~ N(0, sigma_k^2).
n <- 300
x <- runif(n, 0, 10)
z <- rbinom(n, 1, 0.4)
y <- ifelse(z == 1, 8 - 0.5 * x + rnorm(n, 0, 1.5), 1 + 2 * x + rnorm(n, 0, 1))
write.csv(data.frame(x = x, y = y), file.path(out, "regression.csv"), row.names = FALSE)
start <- list(lambda = c(0.5, 0.5), beta = matrix(c(0, 1, 5, 0), 2, 2), sigma = c(2, 2))
fit <- regmixEM(y, x, lambda = start$lambda, beta = start$beta, sigma = start$sigma,
                epsilon = 1e-14, maxit = 100000, verb = FALSE)
# flexmix from the posteriors of mixtools' start: the same maximum
flex <- flexmix(y ~ x, k = 2, cluster = fit$posterior,
                control = list(tolerance = 1e-14, iter.max = 100000))
flex_coef <- parameters(flex)
regression <- data.frame(
  component = 1:2,
  weight = fit$lambda,
  intercept = fit$beta[1, ],
  slope = fit$beta[2, ],
  sigma = fit$sigma,
  loglik = fit$loglik,
  start_weight = start$lambda,
  start_intercept = start$beta[1, ],
  start_slope = start$beta[2, ],
  start_sigma = start$sigma,
  flexmix_intercept = flex_coef["coef.(Intercept)", ],
  flexmix_slope = flex_coef["coef.x", ],
  flexmix_sigma = flex_coef["sigma", ],
  flexmix_loglik = as.numeric(logLik(flex))
)
write.csv(regression, file.path(out, "regression_fit.csv"), row.names = FALSE)

# 2. Weights that depend on a covariate (flexmix's concomitant model, FLXPmultinom):
#    P(z = 2 | w) = logistic(g0 + g1 w), y | z ~ Poisson(lambda_z). Poisson components, whose
#    M-step in flexmix is the exact weighted maximum (a Gaussian's sigma there is corrected
#    for degrees of freedom, not the maximum-likelihood estimate).
n <- 400
w <- runif(n, -3, 3)
z <- rbinom(n, 1, plogis(0.5 + 1.5 * w))
y <- ifelse(z == 1, rpois(n, 9), rpois(n, 2))
write.csv(data.frame(w = w, y = y), file.path(out, "concomitant.csv"), row.names = FALSE)
init <- cbind(as.numeric(y < 5), as.numeric(y >= 5))
gate <- flexmix(y ~ 1, k = 2, cluster = init, model = FLXMRglm(family = "poisson"),
                concomitant = FLXPmultinom(~ w),
                control = list(tolerance = 1e-14, iter.max = 100000))
comp <- parameters(gate)
conc <- parameters(gate, which = "concomitant")
concomitant <- data.frame(
  component = 1:2,
  rate = exp(as.numeric(comp)),
  gate_intercept = conc[1, ],
  gate_slope = conc[2, ],
  loglik = as.numeric(logLik(gate)),
  iterations = gate@iter
)
write.csv(concomitant, file.path(out, "concomitant_fit.csv"), row.names = FALSE)
