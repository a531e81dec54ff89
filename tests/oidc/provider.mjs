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
//   users        (optional) {account id: claims}: the people who may sign in
//   web_clients  (optional) [{client_id, client_secret, redirect_uris}]: applications that sign
//                people in (authorization code flow, client_secret_basic, PKCE when they send it)
//                and out (RP-initiated logout back to one of the same URIs)
//
// A client gets a JWT access token from the client_credentials grant for the resource it
// names (RFC 8707 `resource`, which becomes the token's `aud`), signed with its `alg`, carrying
// its `claims` (role, preferred_username, email) beside the provider's own (iss, sub, aud, exp).
// A person signs in through the provider's own pages (oidc-provider's development interactions:
// a login form taking a user's account id, which any password opens, then a consent page); the
// ID token carries the user's claims (email under the `email` scope, every other one under
// `profile`), as Keycloak and Supabase put them there. Prints "ready <issuer>" once it listens.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const modules = join(process.cwd(), 'node_modules', 'oidc-provider', 'lib', 'index.js');
const { default: Provider } = await import(pathToFileURL(modules).href);

const byId = new Map(config.clients.map((c) => [c.client_id, c]));
const users = config.users ?? {};
const webClients = config.web_clients ?? [];
const profileClaims = new Set(['name', 'preferred_username']);
for (const claims of Object.values(users)) {
  for (const name of Object.keys(claims)) if (!['sub', 'email', 'email_verified'].includes(name)) profileClaims.add(name);
}

const provider = new Provider(config.issuer, {
  clients: config.clients.map((c) => ({
    client_id: c.client_id,
    client_secret: c.client_secret,
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    token_endpoint_auth_method: 'client_secret_post',
  })).concat(webClients.map((c) => ({
    client_id: c.client_id,
    client_secret: c.client_secret,
    grant_types: ['authorization_code'],
    redirect_uris: c.redirect_uris,
    post_logout_redirect_uris: c.redirect_uris,
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }))),
  jwks: { keys: config.keys },
  cookies: { keys: ['tradeloop-tests-only-cookie-key'] },
  features: {
    devInteractions: { enabled: webClients.length > 0 },
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
  findAccount: async (_ctx, id) => (Object.hasOwn(users, id)
    ? { accountId: id, claims: async () => ({ ...users[id], sub: id }) }
    : undefined),
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: [...profileClaims] },
  conformIdTokenClaims: false,
});

provider.listen(config.port, '127.0.0.1', () => {
  process.stdout.write(`ready ${config.issuer}\n`);
});
