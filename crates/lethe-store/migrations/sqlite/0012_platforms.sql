-- An agent serves one platform (its cases, exports and tasks only), or the
-- whole installation when platform is NULL (installation staff).
ALTER TABLE agents ADD COLUMN platform TEXT;
