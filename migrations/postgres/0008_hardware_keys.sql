-- Keys held in a PKCS#11 token (keys.backend = "pkcs11"). Their private
-- half never reaches the database: private_enc stays empty (zero bytes;
-- the column keeps its NOT NULL so replicas of the previous release read
-- every row), backend says where the key lives, and token_object_id is
-- the CKA_ID of its objects in the token. Expand only: rows written by an
-- older replica are software keys, which the default says.
ALTER TABLE keys ADD COLUMN backend TEXT NOT NULL DEFAULT 'software';
ALTER TABLE keys ADD COLUMN token_object_id BYTEA;
