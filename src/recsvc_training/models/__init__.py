"""The models the nightly job builds from the cleaned data.

ALS, cold start, co-purchase, popularity, repurchase, RFM and the ANN index.
"""
