"""Over-optimization lab: best-of-N proxy-vs-gold curves (Gao et al. 2022; the GRM paper's second headline).

Each stage is its own module: K cached samples per prompt (`samples`), gold scorers (`gold`), the proxies'
training pairs, the unbiased best-of-N estimator with KL_BoN, bootstrap intervals and Gao's fit (`estimator`),
and the CSV, PNG and Markdown outputs (`report`).
"""
