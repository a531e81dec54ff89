// A real OpenID Connect provider for the tests: panva's oidc-provider (OpenID certified),
// installed by tests/services/ensure.sh (or the pytest fixture) into a cache folder outside
// the repository; run with that folder as the working directory:
//
//   node tests/oidc/provider.mjs <config.json>
//
// config.json (written by tests/oidc/server.py):
//   issuer   "http://127.0.0.1:<port>"
//   port     the port to listen on (loopback only)
//   keys     private JWKs (RSA and EC, each with a kid): the first of each kind signs, every
//            one is published at the JWKS endpoint (a rotation puts the new key first and keeps
//            the old one published)
//   ttl_s    access-token lifetime
//   clients  [{client_id, client_secret, alg: "RS256" | "ES256", claims: {...}}]
//
// A client gets a JWT access token from the client_credentials grant for the resource it
// names (RFC 8707 `resource`, which becomes the token's `aud`), signed with its `alg`, carrying
// its `claims` (role, preferred_username, email) beside the provider's own (iss, sub, aud, exp).
// Prints "ready <issuer>" once it listens.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const modules = join(process.cwd(), 'node_modules', 'oidc-provider', 'lib', 'index.js');
const { default: Provider } = await import(pathToFileURL(modules).href);

const byId = new Map(config.clients.map((c) => [c.client_id, c]));

const provider = new Provider(config.issuer, {
  clients: config.clients.map((c) => ({
    client_id: c.client_id,
    client_secret: c.client_secret,
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    token_endpoint_auth_method: 'client_secret_post',
  })),
  jwks: { keys: config.keys },
  cookies: { keys: ['tradeloop-tests-only-cookie-key'] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => undefined,
      useGrantedResource: async () => false,
      getResourceServerInfo: async (_ctx, resource, client) => ({
        scope: 'api',
        audience: resource,
        accessTokenFormat: 'jwt',
        accessTokenTTL: config.ttl_s,
        jwt: { sign: { alg: byId.get(client.clientId)?.alg ?? 'RS256' } },
      }),
    },
  },
  extraTokenClaims: async (_ctx, token) => byId.get(token.clientId)?.claims,
});

provider.listen(config.port, '127.0.0.1', () => {
  process.stdout.write(`ready ${config.issuer}\n`);
});
