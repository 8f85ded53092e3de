// Prints, for each [method, url] of the JSON file named by argv[2], the qsh
// that npm atlassian-jwt (the reference for Connect's algorithm) computes:
// one JSON array of {method, url, canonical, qsh}. Run by test_qsh.py with
// NODE_PATH pointing at the node_modules that run.sh installs with `npm ci`.
'use strict';
const fs = require('fs');
const jwt = require('atlassian-jwt');

const vectors = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const out = vectors.map(([method, url]) => {
  const req = jwt.fromMethodAndUrl(method, url);
  return {
    method,
    url,
    canonical: jwt.createCanonicalRequest(req),
    qsh: jwt.createQueryStringHash(req),
  };
});
process.stdout.write(JSON.stringify(out, null, 1) + '\n');
