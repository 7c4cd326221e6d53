# Reference values for tests/test_acceleration.py: Hasselblad's two-component Poisson mixture
# (deaths notices per day, 0-9) fitted by plain EM (SQUAREM::fpiter) and by SQUAREM
# (SQUAREM::squarem, its default SqS3 steps), from the same start.
# Run: Rscript tests/data/squarem/hasselblad.R > tests/data/squarem/hasselblad.json
# (R 4.x, SQUAREM 2021.1, Debian's r-cran-squarem)
suppressMessages(library(SQUAREM))

counts <- 0:9
freq <- c(162, 267, 271, 185, 111, 61, 27, 8, 3, 1)

# p = (weight of component 1, rate 1, rate 2)
em_map <- function(p) {
  a <- p[1] * exp(-p[2]) * p[2]^counts
  b <- (1 - p[1]) * exp(-p[3]) * p[3]^counts
  r <- a / (a + b)
  c(sum(freq * r) / sum(freq),
    sum(counts * freq * r) / sum(freq * r),
    sum(counts * freq * (1 - r)) / sum(freq * (1 - r)))
}
negative_loglik <- function(p) {
  -sum(freq * log(p[1] * exp(-p[2]) * p[2]^counts + (1 - p[1]) * exp(-p[3]) * p[3]^counts)
       - freq * lfactorial(counts))
}

start <- c(0.3, 1.0, 2.5)
control <- list(tol = 1e-10, maxiter = 100000)
plain <- fpiter(par = start, fixptfn = em_map, objfn = negative_loglik, control = control)
accelerated <- squarem(par = start, fixptfn = em_map, objfn = negative_loglik, control = control)

fmt <- function(x) paste(sprintf("%.15g", x), collapse = ", ")
cat("{\n")
cat(sprintf('  "start": [%s],\n', fmt(start)))
cat(sprintf('  "tol": %s,\n', fmt(control$tol)))
cat(sprintf('  "plain_params": [%s],\n', fmt(plain$par)))
cat(sprintf('  "plain_negative_loglik": %s,\n', fmt(negative_loglik(plain$par))))
cat(sprintf('  "plain_fpevals": %d,\n', plain$fpevals))
cat(sprintf('  "squarem_params": [%s],\n', fmt(accelerated$par)))
cat(sprintf('  "squarem_negative_loglik": %s,\n', fmt(accelerated$value.objfn)))
cat(sprintf('  "squarem_fpevals": %d,\n', accelerated$fpevals))
cat(sprintf('  "squarem_objfevals": %d,\n', accelerated$objfevals))
cat(sprintf('  "r_version": "%s",\n', R.version.string))
cat(sprintf('  "squarem_version": "%s"\n', packageVersion("SQUAREM")))
cat("}\n")
