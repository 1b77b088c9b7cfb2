"""``panbinder publications share|shares|unshare``: review links from the command line.

The operator makes, lists and revokes a publication's review links (``data_mounts/review_links.py``).
A new link's URL is printed once: only its hash is kept, so it cannot be shown again. ``unshare``
also stops the servers launched through the link, itself, through the Hub API (with the
portal's settings and Hub token, as the portal would: ``review_servers.py``); those it cannot
stop now (the Hub does not answer) are stopped by the running portal's next sweep, which the
command says.
"""

from __future__ import annotations

import asyncio

from traitlets import Unicode

from .catalogue_cli import CATALOGUE_ALIASES, CatalogueCommand
from .data_mounts.catalogue import Catalogue
from .data_mounts.review_links import ReviewLinks, link_number
from .review_servers import ReviewServers


class ReviewCommand(CatalogueCommand):
    classes = [Catalogue, ReviewLinks, ReviewServers]

    def review_links(self) -> ReviewLinks:
        links = ReviewLinks(parent=self, log=self.log)
        links.signing_key = links.signing_key or self.secret("review-link-key")
        return links

    def review_url(self, doi: str, token: str) -> str:
        """The link's public URL, from the ``serve`` settings (ServeApp.public_url, base_url)."""
        from .serve import ServeApp

        return ServeApp(config=self.config).review_url(doi, token)


class ShareApp(ReviewCommand):
    name = "panbinder-publications-share"
    description = (
        "Make a review link of publication DOI: it launches the publication with its embargoed "
        "datasets, without an account, until it expires or is revoked."
    )
    usage = 'panbinder publications share DOI --expires 30d [--note "Reviewers of manuscript X"]'
    expires = Unicode(
        "30d", help="How long the link lasts: 30d, 12h, 2w (at most ReviewLinks.longest_days)."
    ).tag(config=True)
    note = Unicode("", help="A note for the publication's owners (who the link was for).").tag(config=True)
    aliases = {**CATALOGUE_ALIASES, "expires": "ShareApp.expires", "note": "ShareApp.note"}

    def run(self) -> None:
        doi = self.one_file()
        token, link = self.review_links().create(self.make_catalogue(), doi, self.expires, note=self.note)
        print(self.review_url(link["doi"], token))
        print(f"review link {link['id']}, expires {link['expires']}; the URL is shown only now.")


class SharesApp(ReviewCommand):
    name = "panbinder-publications-shares"
    description = "List the review links of publication DOI: status, expiry, uses, note."
    usage = "panbinder publications shares DOI"

    def run(self) -> None:
        rows = self.review_links().listing(self.make_catalogue(), self.one_file())
        if not rows:
            print("no review links")
        for r in rows:
            last = f", last {r['last_used']}" if r["last_used"] else ""
            note = f"  {r['note']}" if r["note"] else ""
            print(f"{r['id']}\t{r['status']}\texpires {r['expires']}\t{r['uses']} uses{last}{note}")


class UnshareApp(ReviewCommand):
    name = "panbinder-publications-unshare"
    description = (
        "Revoke review link ID (see 'publications shares DOI') at once, and stop the servers "
        "launched through it."
    )
    usage = "panbinder publications unshare ID"

    def run(self) -> None:
        number = link_number(self.one_file())
        link, stopped, left, interval = asyncio.run(self.revoke(number))
        print(f"review link {link['id']} of {link['doi']} revoked ({link['revoked']})")
        print(servers_note(len(stopped), len(left), interval))

    async def revoke(self, number: int) -> tuple[dict, list[str], list[str], float]:
        """Revoke through the components ``serve`` uses (catalogue, Hub launcher, its token)."""
        from .components import Components

        servers = Components(self).review_servers
        try:
            link, stopped, left = await servers.revoke(number)
        finally:
            await servers.launcher.stop()
        return link, stopped, left, servers.interval


def servers_note(stopped: int, left: int, interval: float) -> str:
    """What ``unshare`` says of the servers launched through the revoked link."""
    done = f"{stopped} server{'s' * (stopped != 1)} launched through it stopped"
    if not left:
        return done
    later = (
        f"the running portal stops {'them' if left > 1 else 'it'} within {interval:g} s "
        "(ReviewServers.interval)"
        if interval > 0
        else "stop them with 'panbinder publications unshare' again once the Hub answers"
    )
    return f"{done}; {left} could not be stopped now (the Hub did not answer): {later}"
