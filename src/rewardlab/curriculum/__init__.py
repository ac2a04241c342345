"""Expert-iteration curriculum studies (sycophancy to subterfuge): the generalization matrix."""
